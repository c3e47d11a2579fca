// The live page of `vae serve` (numpy_vae/serve): polls the server's JSON and draws the curves and the latent
// map itself on canvases; every picture of digits is a PNG the server computes from the run's latest checkpoint.
"use strict";
(function () {
  const POLL_MS = 3000;
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];
  const state = { checkpoint: null, metricsMtime: undefined, figures: null, latent: null, seed: 0,
                  map: null, pick: null, generated: null, limits: null };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ fetching
  async function errorOf(response) {
    try { return (await response.json()).error || `HTTP ${response.status}`; }
    catch (e) { return `HTTP ${response.status}`; }
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(await errorOf(response));
    return response.json();
  }

  // Fetch a PNG into <img>, shown `scale` times its size; throws the server's JSON error message.
  async function loadImage(img, url, scale) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(await errorOf(response));
    const objectUrl = URL.createObjectURL(await response.blob());
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the image could not be decoded"));
      img.src = objectUrl;
    });
    if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
    img.dataset.objectUrl = objectUrl;
    img.style.width = `${img.naturalWidth * scale}px`;
    img.hidden = false;
  }

  function showError(el, message) {
    el.textContent = message || "";
    el.hidden = !message;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return Array.isArray(v) ? v.join(",") : String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(Number(v.toFixed(4)));
  }

  // ------------------------------------------------------------------ charts
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { const d = Math.abs(lo) * 0.05 || 1; lo -= d; hi += d; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) ticks.push(Number(t.toPrecision(12)));
    return { lo, hi, ticks };
  }

  function setupCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, w, h };
  }

  // One line chart: series [{name, color, points: [[epoch, value]]}] on shared axes.
  function drawChart(canvas, title, series) {
    const { ctx, w, h } = setupCanvas(canvas);
    const m = { l: 52, r: 10, t: 22, b: 30 };
    const all = series.flatMap((s) => s.points);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(title, m.l, 14);
    if (!all.length) { ctx.fillStyle = "#5b6475"; ctx.fillText("no epoch finished yet", m.l, h / 2); return 0; }
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const xMax = Math.max(...xs, 2), xMin = Math.min(...xs, 1);
    const y = niceTicks(Math.min(...ys), Math.max(...ys), 4);
    const X = (v) => m.l + (v - xMin) / (xMax - xMin) * (w - m.l - m.r);
    const Y = (v) => h - m.b - (v - y.lo) / (y.hi - y.lo) * (h - m.t - m.b);
    ctx.strokeStyle = "#e6e9ef"; ctx.fillStyle = "#5b6475"; ctx.lineWidth = 1;
    for (const t of y.ticks) {
      if (t < y.lo || t > y.hi) continue;
      ctx.beginPath(); ctx.moveTo(m.l, Y(t)); ctx.lineTo(w - m.r, Y(t)); ctx.stroke();
      ctx.fillText(fmt(t), 4, Y(t) + 4);
    }
    const xt = niceTicks(xMin, xMax, Math.min(6, xMax - xMin)).ticks.filter((t) => Number.isInteger(t));
    for (const t of xt) ctx.fillText(String(t), X(t) - 3, h - m.b + 13);
    ctx.fillText("epoch", (m.l + w - m.r) / 2 - 14, h - 3);
    series.forEach((s, k) => {
      ctx.strokeStyle = ctx.fillStyle = s.color; ctx.lineWidth = 2;
      ctx.beginPath();
      s.points.forEach(([ex, ey], i) => (i ? ctx.lineTo(X(ex), Y(ey)) : ctx.moveTo(X(ex), Y(ey))));
      ctx.stroke();
      for (const [ex, ey] of s.points) { ctx.beginPath(); ctx.arc(X(ex), Y(ey), 2.5, 0, 2 * Math.PI); ctx.fill(); }
      const lx = w - m.r - 110 + 56 * k;                                 // the legend, on the title's line
      ctx.fillRect(lx, 10, 12, 3);
      ctx.fillText(s.name, lx + 16, 14);
    });
    return all.length;
  }

  function renderCurves(metrics) {
    const rows = metrics.rows;
    let points = 0;
    for (const canvas of document.querySelectorAll("canvas.chart")) {
      const key = canvas.dataset.key;
      const series = [["train", "#2f6fdf"], ["test", "#e8710a"]].map(([part, color]) => ({
        name: part, color,
        points: rows.filter((r) => typeof r[`${part}_${key}`] === "number" && typeof r.epoch === "number")
                    .map((r) => [r.epoch, r[`${part}_${key}`]]),
      }));
      points += drawChart(canvas, canvas.dataset.title, series);
      canvas.dataset.epochs = String(rows.length);
    }
    $("curves-section").dataset.epochs = String(rows.length);
    $("curves-note").textContent = rows.length
      ? `${rows.length} epoch${rows.length > 1 ? "s" : ""}; train: mean over the epoch's steps, test: after the epoch.`
      : "No epoch has finished yet.";
    renderMetricsTable(metrics);
    return points;
  }

  // ------------------------------------------------------------------ tables
  function renderTable(table, head, rows) {
    table.replaceChildren();
    if (head) {
      const tr = table.createTHead().insertRow();
      for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
    }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      row.forEach((cell, i) => {
        const el = document.createElement(i === 0 && !head ? "th" : "td");
        el.textContent = fmt(cell);
        tr.appendChild(el);
      });
    }
  }

  function renderMetricsTable(metrics) {
    const cols = metrics.columns;
    renderTable($("metrics-table"), cols, metrics.rows.slice().reverse().map((r) => cols.map((c) => r[c])));
  }

  function renderConfig(config) {
    const rows = config ? Object.entries(config) : [["config.json", "not written yet"]];
    renderTable($("config-table"), null, rows);
  }

  // ------------------------------------------------------------------ run, checkpoint, figures
  function renderRun(run) {
    if (run.pending) {
      $("run-name").textContent = "(starting)";
      $("status").textContent = run.message;
      return;
    }
    $("run-name").textContent = run.run;
    document.title = `VAE run ${run.run}`;
    const pill = $("status");
    pill.textContent = run.status.text;
    pill.className = `pill ${run.status.state}`;
    const ck = run.checkpoint;
    $("checkpoint-info").textContent = ck.error ? "" : `· last.npz after epoch ${ck.epoch}`;
    $("updated").textContent = `· updated ${new Date().toLocaleTimeString()}`;
    renderConfig(run.config);
    state.limits = run.limits;
  }

  function renderFigures(run) {
    const key = JSON.stringify([run.figures, run.report]);
    if (key === state.figures) return;
    state.figures = key;
    const box = $("figures");
    box.replaceChildren();
    for (const f of run.figures) {
      const fig = document.createElement("figure"), img = document.createElement("img"), cap = document.createElement("figcaption");
      img.src = `/files/${encodeURIComponent(f.name)}?v=${Math.round(f.mtime * 1000)}`;
      img.alt = f.name;
      cap.textContent = f.name;
      fig.append(img, cap);
      box.appendChild(fig);
    }
    $("figures-note").hidden = run.figures.length > 0;
    const link = $("report-link");
    link.replaceChildren();
    if (run.report) {
      const a = document.createElement("a");
      a.href = "/files/report.html"; a.textContent = "open report.html"; a.target = "_blank"; a.rel = "noopener";
      link.appendChild(a);
    }
  }

  async function refreshCheckpoint(run) {
    const ck = run.checkpoint;
    if (ck.error) {
      showError($("checkpoint-error"), ck.error);
      return;
    }
    showError($("checkpoint-error"), null);
    if (state.checkpoint === ck.mtime) return;
    state.checkpoint = ck.mtime;
    state.latent = ck.latent;
    $("checkpoint-epoch").textContent = `(last.npz, epoch ${ck.epoch})`;
    const v = `v=${Math.round(ck.mtime * 1000)}`;
    try {
      await loadImage($("reconstructions"), `/api/reconstructions?${v}`, 2);
      await loadImage($("samples"), `/api/samples?${v}`, 2);
    } catch (e) { showError($("checkpoint-error"), e.message); }
    await refreshLatentMap(v);
    if (state.generated) await generate(state.generated.digit, state.generated.count, state.seed);
  }

  // ------------------------------------------------------------------ generate digit
  async function generate(digit, count, seed) {
    const err = $("generate-error"), fig = $("generate-figure"), img = $("generated");
    const url = `/api/generate?digit=${encodeURIComponent(digit)}&count=${encodeURIComponent(count)}&seed=${seed}`;
    img.dataset.loading = "1";
    try {
      await loadImage(img, url, 2);
      showError(err, null);
      img.dataset.digit = String(digit);
      img.dataset.count = String(count);
      fig.hidden = false;
      state.generated = { digit, count };
      $("generate-caption").textContent = `${count} test digit${count > 1 ? "s" : ""} ${digit} (left of each grey line), ` +
        `each followed by ${state.limits ? state.limits.samples_per_digit : 6} decodes of z = mu + sigma * eps, ` +
        `eps ~ N(0, I): samples around its posterior q(z|x) (draw ${seed}).`;
    } catch (e) {
      showError(err, e.message);
      fig.hidden = true;
    } finally {
      delete img.dataset.loading;
    }
  }

  function setupGenerate() {
    const select = $("digit");
    for (let d = 0; d <= 9; d++) select.add(new Option(String(d), String(d), d === 3, d === 3));
    $("generate-form").addEventListener("submit", (e) => {
      e.preventDefault();
      generate($("digit").value, $("count").value.trim(), state.seed);
    });
    $("redraw").addEventListener("click", () => {
      state.seed += 1;
      generate($("digit").value, $("count").value.trim(), state.seed);
    });
  }

  // ------------------------------------------------------------------ latent map
  function mapGeometry(canvas) {
    const w = canvas.clientWidth, h = canvas.clientHeight, m = { l: 30, r: 8, t: 8, b: 24 };
    const e = state.map.extent;
    return {
      w, h, m,
      X: (x) => m.l + (x - e.x[0]) / (e.x[1] - e.x[0]) * (w - m.l - m.r),
      Y: (y) => h - m.b - (y - e.y[0]) / (e.y[1] - e.y[0]) * (h - m.t - m.b),
      fromPixel: (px, py) => [e.x[0] + (px - m.l) / (w - m.l - m.r) * (e.x[1] - e.x[0]),
                              e.y[0] + (h - m.b - py) / (h - m.t - m.b) * (e.y[1] - e.y[0])],
    };
  }

  function drawMap() {
    const canvas = $("latent-map");
    const { ctx } = setupCanvas(canvas);
    const g = mapGeometry(canvas), e = state.map.extent;
    ctx.strokeStyle = "#eceff4"; ctx.fillStyle = "#5b6475"; ctx.lineWidth = 1;
    for (const t of niceTicks(e.x[0], e.x[1], 6).ticks) {
      ctx.beginPath(); ctx.moveTo(g.X(t), g.m.t); ctx.lineTo(g.X(t), g.h - g.m.b); ctx.stroke();
      ctx.fillText(fmt(t), g.X(t) - 4, g.h - 8);
    }
    for (const t of niceTicks(e.y[0], e.y[1], 6).ticks) {
      ctx.beginPath(); ctx.moveTo(g.m.l, g.Y(t)); ctx.lineTo(g.w - g.m.r, g.Y(t)); ctx.stroke();
      ctx.fillText(fmt(t), 2, g.Y(t) + 4);
    }
    ctx.globalAlpha = 0.7;
    state.map.points.forEach(([x, y], i) => {
      ctx.fillStyle = COLORS[state.map.labels[i]];
      ctx.fillRect(g.X(x) - 1.5, g.Y(y) - 1.5, 3, 3);
    });
    ctx.globalAlpha = 1;
    COLORS.forEach((c, d) => {
      ctx.fillStyle = c; ctx.fillRect(g.w - g.m.r - 20, g.m.t + 4 + 13 * d, 8, 8);
      ctx.fillStyle = "#1d2330"; ctx.fillText(String(d), g.w - g.m.r - 9, g.m.t + 12 + 13 * d);
    });
    if (state.pick) {
      const [px, py] = [g.X(state.pick[0]), g.Y(state.pick[1])];
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(px - 10, py); ctx.lineTo(px + 10, py); ctx.moveTo(px, py - 10); ctx.lineTo(px, py + 10); ctx.stroke();
    }
    canvas.dataset.points = String(state.map.points.length);
  }

  async function refreshLatentMap(v) {
    const box = $("latent-box"), note = $("latent-note");
    if (state.latent !== 2) {
      box.hidden = true;
      note.textContent = `The latent map needs a 2-D latent; this run's latent has ${state.latent} dimensions.`;
      return;
    }
    try {
      state.map = await getJSON(`/api/latent?${v}`);
      box.hidden = false;
      note.textContent = `Posterior means of the first ${state.map.points.length} test digits, colored by label ` +
        `(epoch ${state.map.epoch}). Click anywhere: that z is decoded.`;
      drawMap();
      if (state.pick) await decodeAt(state.pick[0], state.pick[1]);
    } catch (e) { note.textContent = e.message; }
  }

  async function decodeAt(x, y) {
    const img = $("decoded"), text = $("decoded-z");
    state.pick = [x, y];
    drawMap();
    try {
      await loadImage(img, `/api/decode?x=${x.toFixed(3)}&y=${y.toFixed(3)}`, 4);
      img.dataset.z = `${x.toFixed(3)},${y.toFixed(3)}`;
      text.textContent = `z = (${x.toFixed(2)}, ${y.toFixed(2)})`;
      showError($("decode-error"), null);
    } catch (e) { showError($("decode-error"), e.message); }
  }

  function setupMap() {
    $("latent-map").addEventListener("click", (e) => {
      if (!state.map) return;
      const rect = e.target.getBoundingClientRect();
      const [x, y] = mapGeometry(e.target).fromPixel(e.clientX - rect.left, e.clientY - rect.top);
      const lim = state.map.limit;
      decodeAt(Math.max(-lim, Math.min(lim, x)), Math.max(-lim, Math.min(lim, y)));
    });
  }

  // ------------------------------------------------------------------ polling
  async function poll() {
    try {
      const run = await getJSON("/api/run");
      renderRun(run);
      if (!run.pending) {
        const metrics = await getJSON("/api/metrics");
        if (metrics.mtime !== state.metricsMtime) { state.metricsMtime = metrics.mtime; renderCurves(metrics); }
        renderFigures(run);
        await refreshCheckpoint(run);
      }
      showError($("page-error"), null);
      document.body.dataset.state = run.pending ? "pending" : "ready";
    } catch (e) {
      showError($("page-error"), `the server does not answer (${e.message}); the page retries every few seconds`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  setupGenerate();
  setupMap();
  poll();
})();
