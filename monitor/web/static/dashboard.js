// netpol-drift dashboard: optional niceties (sorting, filtering, hover highlight). Every page works without it.
"use strict";
(function () {
  function text(cell) { return (cell && cell.textContent || "").trim(); }
  function cmp(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && String(x) === a.split(" ")[0] && String(y) === b.split(" ")[0]) return x - y;
    return a.localeCompare(b, undefined, { numeric: true });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) { var c = cmp(text(r1.cells[col]), text(r2.cells[col])); return asc ? c : -c; });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("input.filter[data-target]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-target"));
    if (!table) return;
    input.addEventListener("input", function () {
      var needle = input.value.toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
  });
  // Hover a grid cell: its source row and destination column headers light up.
  document.querySelectorAll("table.grid").forEach(function (grid) {
    var lit = [];
    grid.addEventListener("mouseover", function (ev) {
      var td = ev.target.closest("td.cell");
      lit.forEach(function (el) { el.classList.remove("hl"); });
      lit = [];
      if (!td) return;
      var row = td.parentElement, head = grid.tHead.rows[0].cells[td.cellIndex];
      [row.cells[0], head].forEach(function (el) { if (el) { el.classList.add("hl"); lit.push(el); } });
    });
  });
})();
