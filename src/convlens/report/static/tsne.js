// The report's t-SNE map: canvas scatter with pan, zoom and a hover tooltip. Strings from the
// data are only ever set with textContent, never parsed as HTML.
"use strict";
(function () {
  const P = JSON.parse(document.getElementById("points").textContent);
  const cv = document.getElementById("tsne"), ctx = cv.getContext("2d");
  const tip = document.getElementById("tooltip"), tipText = document.getElementById("tiptext");
  const thumb = document.getElementById("thumb"), tctx = thumb.getContext("2d");
  const n = P.x.length;
  const pal = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"];
  const colour = k => k < 0 ? "#999" : pal[k % pal.length];
  const name = k => (k >= 0 && k < P.names.length) ? P.names[k] : String(k);
  const predNames = P.pred_names || P.names;
  const predName = k => (k >= 0 && k < predNames.length) ? predNames[k] : String(k);
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, P.x[i]); maxX = Math.max(maxX, P.x[i]);
    minY = Math.min(minY, P.y[i]); maxY = Math.max(maxY, P.y[i]);
  }
  const pad = 20;
  let scale = Math.min((cv.width - 2 * pad) / ((maxX - minX) || 1), (cv.height - 2 * pad) / ((maxY - minY) || 1));
  let ox = pad - minX * scale, oy = pad - minY * scale;
  const sx = i => P.x[i] * scale + ox, sy = i => P.y[i] * scale + oy;
  let sprite = null;
  if (P.sprite) { sprite = new Image(); sprite.src = P.sprite; }

  function draw() {
    ctx.clearRect(0, 0, cv.width, cv.height);
    const r = Math.max(1.5, Math.min(4, scale * 0.15));
    for (let i = 0; i < n; i++) {
      ctx.fillStyle = colour(P.label[i]);
      ctx.fillRect(sx(i) - r / 2, sy(i) - r / 2, r, r);
    }
  }
  function nearest(mx, my) {
    let best = -1, bd = 64;  // within 8 px
    for (let i = 0; i < n; i++) {
      const dx = sx(i) - mx, dy = sy(i) - my, d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = i; }
    }
    return best;
  }
  let drag = null;
  cv.addEventListener("mousedown", e => { drag = [e.offsetX, e.offsetY]; cv.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { drag = null; cv.style.cursor = "grab"; });
  cv.addEventListener("mousemove", e => {
    if (drag) {
      ox += e.offsetX - drag[0]; oy += e.offsetY - drag[1]; drag = [e.offsetX, e.offsetY];
      tip.style.display = "none"; draw(); return;
    }
    const i = nearest(e.offsetX, e.offsetY);
    if (i < 0) { tip.style.display = "none"; return; }
    tipText.textContent = "#" + P.index[i] + "  label: " + name(P.label[i]) + "  predicted: " + predName(P.pred[i]);
    tctx.clearRect(0, 0, thumb.width, thumb.height);
    if (sprite && sprite.complete && i < P.sprite_count) {
      const s = P.sprite_size, c = P.sprite_cols;
      tctx.imageSmoothingEnabled = false;
      tctx.drawImage(sprite, (i % c) * s, Math.floor(i / c) * s, s, s, 0, 0, thumb.width, thumb.height);
      thumb.style.display = "block";
    } else { thumb.style.display = "none"; }
    tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px";
    tip.style.display = "block";
  });
  cv.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  cv.addEventListener("wheel", e => {
    e.preventDefault();
    const f = Math.exp(-e.deltaY * 0.0015);
    ox = e.offsetX - (e.offsetX - ox) * f; oy = e.offsetY - (e.offsetY - oy) * f; scale *= f;
    draw();
  }, { passive: false });
  const legend = document.getElementById("legend");
  P.names.forEach((nm, k) => {
    const s = document.createElement("span");
    s.style.color = colour(k); s.textContent = "■ " + nm + "  ";
    legend.appendChild(s);
  });
  draw();
})();
