// simwatch console: the little the pages need beyond HTML. Without it everything still works.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The search box accepts an ICCID with spaces or dashes as printed on the card.
  for (const form of document.querySelectorAll("form.search, form[action='/ui/sims']")) {
    form.addEventListener("submit", () => {
      const input = form.querySelector("input[name=q]");
      if (input) input.value = input.value.trim();
    });
  }
  // Rows of SIM and incident tables open their link when tapped anywhere (phones).
  for (const row of document.querySelectorAll("table.list tbody tr")) {
    const link = row.querySelector("a");
    if (!link) continue;
    row.addEventListener("click", (event) => {
      if (event.target.closest("a, button, input")) return;
      link.click();
    });
  }
});
