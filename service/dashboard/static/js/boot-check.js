// A classic (non-module) script: if the dashboard's modules never start (an old browser, a
// script that failed to load), say so instead of leaving a page that only says "Loading".
"use strict";
window.setTimeout(function () {
  if (document.documentElement.dataset.started) return;
  var view = document.getElementById("view");
  var panel = document.createElement("div");
  panel.className = "error-panel";
  panel.setAttribute("role", "alert");
  var title = document.createElement("strong");
  title.textContent = "The dashboard did not start";
  var detail = document.createElement("p");
  detail.className = "error-detail";
  detail.textContent = "Its scripts did not run in this browser (the console says why). "
    + "The API itself works: see /docs.";
  panel.append(title, detail);
  view.replaceChildren(panel);
}, 5000);
