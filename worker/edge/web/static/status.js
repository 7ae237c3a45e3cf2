// Draws the bytes-per-day chart of the status page from the JSON the page embeds (no inline script).
(function () {
  "use strict";
  var source = document.getElementById("bytes-by-day");
  var target = document.getElementById("chart");
  if (!source || !target || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var xs = data.days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
  var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function human(bytes) {
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
    return (i === 0 ? bytes : bytes.toFixed(1)) + " " + units[i];
  }
  var options = {
    width: Math.max(320, Math.min(1000, target.clientWidth || 800)),
    height: 260,
    // half a day of room on each side, so the first and last days' bars are drawn whole
    scales: { x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } } },
    axes: [{}, { size: 80, values: function (u, ticks) { return ticks.map(human); } }],
    series: [
      {},
      { label: "bytes archived", stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.25)",
        paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false }, value: function (u, v) { return v == null ? "" : human(v); } }
    ]
  };
  window.archiverChart = new uPlot(options, [xs, data.bytes], target);
  target.setAttribute("data-rendered", "true");
})();
