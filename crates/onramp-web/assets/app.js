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

// The onboarding detail page: refresh the timeline whenever the server says the onboarding
// changed (server-sent events), until it is terminal. Without EventSource, poll.
function followLive(element) {
  const url = element.dataset.live;
  if (!url || element.dataset.terminal) return;
  let refreshing = false;
  let again = false;
  let source = null;
  const refresh = async () => {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        element.innerHTML = await response.text();
        if (response.headers.get("x-onramp-terminal") === "true") {
          // Terminal: nothing will change any more, and nothing is left to retry or cancel.
          // (Reload for the full audit log.)
          element.dataset.terminal = "true";
          document.querySelectorAll(".page-head .actions").forEach((a) => a.remove());
          if (source) source.close();
          return;
        }
      }
    } catch (_) { /* a network hiccup: the next change or poll tries again */ }
    finally { refreshing = false; }
    if (again) { again = false; refresh(); }
  };
  if (window.EventSource && element.dataset.changes) {
    source = new EventSource(element.dataset.changes);
    source.addEventListener("changed", refresh);
  } else {
    const poll = async () => { await refresh(); if (!element.dataset.terminal) setTimeout(poll, 1000); };
    setTimeout(poll, 1000);
  }
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

// The new-onboarding form: hand-picked tasks as an ordered list with add, move and remove.
// The comma-separated field stays the source of truth (and works without this script).
function taskPicker(input) {
  const names = Array.from(document.querySelectorAll("#task-names option")).map((o) => o.value);
  const list = document.createElement("ol");
  list.className = "picked";
  const add = document.createElement("select");
  add.setAttribute("aria-label", "Add a task");
  add.innerHTML = '<option value="">+ add a task…</option>' +
    names.map((n) => `<option value="${n}">${n}</option>`).join("");
  const current = () => input.value.split(",").map((t) => t.trim()).filter(Boolean);
  const set = (tasks) => { input.value = tasks.join(", "); render(); };
  const button = (label, title, onClick) => {
    const b = document.createElement("button");
    b.type = "button"; b.className = "secondary small"; b.textContent = label; b.title = title;
    b.setAttribute("aria-label", title); b.addEventListener("click", onClick);
    return b;
  };
  function render() {
    const tasks = current();
    list.replaceChildren(...tasks.map((task, i) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = task;
      li.append(name,
        button("↑", `Move ${task} up`, () => { if (i > 0) { [tasks[i - 1], tasks[i]] = [tasks[i], tasks[i - 1]]; set(tasks); } }),
        button("↓", `Move ${task} down`, () => { if (i < tasks.length - 1) { [tasks[i + 1], tasks[i]] = [tasks[i], tasks[i + 1]]; set(tasks); } }),
        button("✕", `Remove ${task}`, () => { tasks.splice(i, 1); set(tasks); }));
      return li;
    }));
  }
  add.addEventListener("change", () => { if (add.value) { set([...current(), add.value]); add.value = ""; } });
  input.addEventListener("input", render);
  input.after(list, add);
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-task-picker]").forEach(taskPicker);
  const live = document.querySelector("[data-live]");
  if (live) followLive(live);
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) refreshEvery(Number(refresh.dataset.refresh) || 5000);
});
