// Sorts a table.sortable's tbody.rows by the clicked column: data-value when a cell has one
// (numbers), else its text; empty cells last. The pinned tbody (overall) stays on top.
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.querySelector("tbody.rows");
      var key = function (row) {
        var cell = row.cells[column];
        var value = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : null;
        return value === null ? cell.textContent.trim() : (value === "" ? null : parseFloat(value));
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var order = typeof x === "number" ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
