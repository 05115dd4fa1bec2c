// onramp admin UI: a little progressive enhancement. Every page works without it.
"use strict";

// Buttons with data-confirm ask first.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  // A submit button marked data-once shows that the form is on its way. (The server makes a
  // repeated submission harmless anyway: each form carries its own idempotency key.)
  if (button && button.hasAttribute("data-once")) {
    setTimeout(() => { button.disabled = true; button.textContent = "Working…"; }, 0);
  }
});

// The onboarding detail page: refresh the timeline until the onboarding is terminal.
function followLive(element) {
  const url = element.dataset.live;
  if (!url || element.dataset.terminal) return;
  const poll = async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        element.innerHTML = await response.text();
        if (response.headers.get("x-onramp-terminal") === "true") {
          // Terminal: nothing will change any more, and nothing is left to retry or cancel.
          // (Reload for the full audit log.)
          element.dataset.terminal = "true";
          document.querySelectorAll(".page-head .actions").forEach((a) => a.remove());
          return;
        }
      }
    } catch (_) { /* network hiccup: try again */ }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

// The dashboard: refresh the page's content every few seconds.
function refreshEvery(ms) {
  setTimeout(async () => {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", cache: "no-store" });
      if (response.ok && !document.activeElement?.closest("form")) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("main");
        if (fresh) document.querySelector("main").replaceWith(fresh);
      }
    } catch (_) { /* try again */ }
    refreshEvery(ms);
  }, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live]");
  if (live) followLive(live);
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) refreshEvery(Number(refresh.dataset.refresh) || 5000);
});
