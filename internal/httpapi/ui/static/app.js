// strand console: small enhancements over the server-rendered pages.
// The lag chart samples the group's total lag every 5 s while the page is
// open (from /api/groups/NAME) and draws it as an SVG polyline.
(function () {
  "use strict";
  var chart = document.getElementById("lag-chart");
  if (!chart) return;
  var group = chart.getAttribute("data-group");
  var svg = chart.querySelector("svg");
  var samples = [Number(chart.getAttribute("data-lag")) || 0];
  var ns = "http://www.w3.org/2000/svg";

  function draw() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var max = Math.max.apply(null, samples.concat([1]));
    var n = Math.max(samples.length - 1, 1);
    var pts = samples.map(function (v, i) {
      return (i * 600 / n).toFixed(1) + "," + (115 - v * 105 / max).toFixed(1);
    }).join(" ");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2456c8");
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
    var label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4");
    label.setAttribute("y", "14");
    label.setAttribute("font-size", "12");
    label.textContent = "max " + max + ", now " + samples[samples.length - 1];
    svg.appendChild(label);
  }

  function sample() {
    fetch("/api/groups/" + encodeURIComponent(group))
      .then(function (r) { return r.json(); })
      .then(function (g) {
        if (typeof g.total_lag !== "number") return;
        samples.push(g.total_lag);
        if (samples.length > 120) samples.shift();
        document.getElementById("total-lag").textContent = g.total_lag;
        draw();
      })
      .catch(function () {});
  }

  draw();
  setInterval(sample, 5000);
})();
