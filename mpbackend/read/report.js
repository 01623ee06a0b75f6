// The HTML report's drawing script (mpbackend/read/report.py inlines it; the page's
// Content-Security-Policy allows this exact text, by its sha256, and no other script).
// It reads #mp-data, draws each <canvas data-section data-chart>, redraws on resize,
// and shows the values under the pointer in the chart's readout. Text from the runs
// (labels, keys) only ever goes to textContent and fillText, never to markup.
(function () {
  "use strict";
  var status = document.getElementById("status");
  var data = JSON.parse(document.getElementById("mp-data").textContent);
  var canvases = Array.prototype.slice.call(document.querySelectorAll("canvas[data-chart]"));

  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace("e+", "e");
    return String(Math.round(v * 1e4) / 1e4);
  }
  function ticks(lo, hi, count) {
    var span = hi - lo, step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = [], t = Math.ceil(lo / step) * step;
    for (; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    return out;
  }
  function bounds(chart) {
    var b = {x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity};
    chart.lines.forEach(function (l) {
      for (var i = 0; i < l.x.length; i++) {
        if (l.x[i] < b.x0) b.x0 = l.x[i]; if (l.x[i] > b.x1) b.x1 = l.x[i];
        if (l.y[i] < b.y0) b.y0 = l.y[i]; if (l.y[i] > b.y1) b.y1 = l.y[i];
      }
    });
    if (b.x0 === b.x1) { b.x0 -= 1; b.x1 += 1; }
    if (b.y0 === b.y1) { var d = Math.abs(b.y0) * 0.1 || 1; b.y0 -= d; b.y1 += d; }
    var pad = (b.y1 - b.y0) * 0.05; b.y0 -= pad; b.y1 += pad;
    return b;
  }
  function draw(canvas, chart, xname, hover) {
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 400, h = canvas.clientHeight || 260;
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var L = 58, R = 12, T = 8, B = 34, pw = w - L - R, ph = h - T - B;
    var b = bounds(chart);
    var sx = function (v) { return L + (v - b.x0) / (b.x1 - b.x0) * pw; };
    var sy = function (v) { return T + ph - (v - b.y0) / (b.y1 - b.y0) * ph; };
    ctx.font = "11px system-ui, sans-serif"; ctx.lineWidth = 1;
    ctx.strokeStyle = "#e6e8eb"; ctx.fillStyle = "#57606a";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    ticks(b.y0, b.y1, 5).forEach(function (t) {
      var y = Math.round(sy(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
      ctx.fillText(fmt(t), L - 6, y);
    });
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    ticks(b.x0, b.x1, Math.max(2, Math.floor(pw / 90))).forEach(function (t) {
      var x = Math.round(sx(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, T + ph); ctx.stroke();
      ctx.fillText(fmt(t), x, T + ph + 4);
    });
    ctx.fillText(xname, L + pw / 2, T + ph + 18);
    ctx.strokeStyle = "#8b949e"; ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
    ctx.save(); ctx.beginPath(); ctx.rect(L, T, pw, ph); ctx.clip();
    chart.lines.forEach(function (l) {
      // A logged chart's line has its own colour and label; a scatter only dots.
      ctx.strokeStyle = ctx.fillStyle = l.colour || data.runs[l.run].colour; ctx.lineWidth = 2;
      if (!l.dots) {
        ctx.beginPath();
        for (var i = 0; i < l.x.length; i++) {
          var px = sx(l.x[i]), py = sy(l.y[i]);
          if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        }
        ctx.stroke();
      }
      if (l.dots || l.x.length < 40) {
        for (var j = 0; j < l.x.length; j++) {
          ctx.beginPath(); ctx.arc(sx(l.x[j]), sy(l.y[j]), 2.5, 0, 2 * Math.PI); ctx.fill();
        }
      }
    });
    ctx.restore();
    if (hover !== undefined) {
      var xv = b.x0 + (hover - L) / pw * (b.x1 - b.x0), parts = [];
      ctx.strokeStyle = "#57606a"; ctx.beginPath();
      ctx.moveTo(hover + 0.5, T); ctx.lineTo(hover + 0.5, T + ph); ctx.stroke();
      chart.lines.forEach(function (l) {
        var lo = 0, hi = l.x.length - 1;
        while (hi - lo > 1) {
          var mid = (lo + hi) >> 1;
          if (l.x[mid] < xv) lo = mid; else hi = mid;
        }
        var i = Math.abs(l.x[lo] - xv) <= Math.abs(l.x[hi] - xv) ? lo : hi;
        parts.push((l.label || data.runs[l.run].label) + ": " + fmt(l.y[i]) + " @ " +
                   fmt(l.x[i]));
      });
      return parts.join("   ");
    }
    return "";
  }
  function spec(canvas) {
    var section = data.sections[+canvas.dataset.section];
    var chart = section.charts[+canvas.dataset.chart];
    return {chart: chart, x: chart.x || section.x};
  }
  function drawAll() {
    var drawn = 0;
    canvases.forEach(function (canvas) {
      var s = spec(canvas);
      draw(canvas, s.chart, s.x);
      drawn += 1;
    });
    document.body.dataset.chartsDrawn = String(drawn);
    status.textContent = drawn + " of " + canvases.length + " charts drawn.";
  }
  try {
    drawAll();
    canvases.forEach(function (canvas) {
      var readout = canvas.parentNode.querySelector(".readout");
      canvas.addEventListener("mousemove", function (ev) {
        var s = spec(canvas), r = canvas.getBoundingClientRect();
        readout.textContent = draw(canvas, s.chart, s.x, ev.clientX - r.left);
      });
      canvas.addEventListener("mouseleave", function () {
        var s = spec(canvas); draw(canvas, s.chart, s.x); readout.textContent = "";
      });
    });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending); pending = setTimeout(drawAll, 100);
    });
  } catch (err) {
    document.body.dataset.chartsError = String(err);
    status.textContent = "Charts could not be drawn: " + err;
  }
})();
