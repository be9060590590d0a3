// convlens report: small helpers shared by every page (no external libraries).
"use strict";
document.querySelectorAll("img").forEach(function (img) {
  img.addEventListener("error", function () { img.classList.add("broken"); });
});
