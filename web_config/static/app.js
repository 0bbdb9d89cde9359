// Mood Melody setup page: live status polling and the few buttons that post JSON.
"use strict";

const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

function postJson(url, body) {
  return fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body),
  });
}

function pick(data, path) {
  return path.split(".").reduce((value, key) => (value == null ? value : value[key]), data);
}

const formats = {
  percent: (v) => `${Math.round((v || 0) * 100)} %`,
  yesno: (v) => (v ? "yes" : "no"),
  fps: (v) => `${(v || 0).toFixed(1)} fps`,
};
const blanks = { emotion: "no face in view", mood: "none yet", override: "none: follows the faces",
                 "now_playing.name": "nothing", "now_playing.device": "–", model: "–" };

function showStatus(data) {
  document.querySelectorAll("[data-status]").forEach((el) => {
    const key = el.dataset.status;
    const value = pick(data, key);
    const format = formats[el.dataset.format];
    const blank = value === null || value === undefined || value === "";
    el.textContent = format ? format(value) : (blank ? (blanks[key] || "") : String(value));
    el.classList.toggle("blank", blank && !format);
  });
  // data-show-when="key" shows an element while key is truthy; "key=a|b" while it is a or b.
  document.querySelectorAll("[data-show-when]").forEach((el) => {
    const [key, wanted] = el.dataset.showWhen.split("=");
    const value = pick(data, key);
    el.hidden = wanted === undefined ? !value : !wanted.split("|").includes(String(value));
  });
  document.querySelectorAll("[data-score]").forEach((el) => {
    el.value = (data.scores || {})[el.dataset.score] || 0;
  });
  document.querySelectorAll("[data-score-text]").forEach((el) => {
    el.textContent = Math.round(((data.scores || {})[el.dataset.scoreText] || 0) * 100);
  });
  document.querySelectorAll("[data-status-list]").forEach((el) => {
    el.replaceChildren(...(data[el.dataset.statusList] || []).map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
  });
  const controls = { autoplay: data.autoplay, camera: data.camera_enabled };
  document.querySelectorAll("[data-control]").forEach((el) => {
    if (document.activeElement !== el) el.checked = Boolean(controls[el.dataset.control]);
  });
}

function startPolling(root) {
  const url = root.dataset.liveStatus;
  const timeline = document.querySelector("[data-timeline]");
  let ticks = 0;
  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      if (response.ok) showStatus(await response.json());
      if (timeline && ++ticks % 30 === 0) {
        const svg = await fetch(timeline.dataset.timeline, { credentials: "same-origin" });
        if (svg.ok) timeline.innerHTML = await svg.text();
      }
    } catch (err) {
      // The device may be restarting: keep polling.
    }
    setTimeout(tick, 2000);
  }
  tick();
}

function wireControls() {
  const errorBox = document.querySelector("[data-control-error]");
  async function send(body) {
    const response = await postJson("/api/control", body);
    if (errorBox) {
      errorBox.hidden = response.ok;
      if (!response.ok) errorBox.textContent = (await response.json()).error || "failed";
    }
  }
  document.querySelectorAll("[data-control]").forEach((el) => {
    el.addEventListener("change", () => send({ [el.dataset.control]: el.checked }));
  });
  document.querySelectorAll("[data-action]").forEach((el) => {
    el.addEventListener("click", () => send({ action: el.dataset.action }));
  });
}

function wireFormTests() {
  // "Test connection", "Test" speaker: post the form to another URL, show the answer inline.
  document.querySelectorAll("[data-test-connection]").forEach((button) => {
    const result = button.form.querySelector("[data-test-result]");
    button.addEventListener("click", async () => {
      result.hidden = false;
      result.className = "muted";
      result.textContent = "Trying…";
      const response = await fetch(button.dataset.testConnection, {
        method: "POST", credentials: "same-origin", body: new FormData(button.form),
      });
      const answer = await response.json();
      result.className = answer.ok ? "notice" : "error";
      result.textContent = answer.message || Object.entries(answer.errors || {})
        .map(([field, problem]) => `${field}: ${problem}`).join("; ");
    });
  });
}

function wireSnapshot() {
  const button = document.querySelector("[data-snapshot]");
  const image = document.querySelector("[data-snapshot-image]");
  if (!button || !image) return;
  button.addEventListener("click", () => {
    image.src = `${button.dataset.snapshot}?t=${Date.now()}`;
    image.hidden = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live-status]");
  if (live) startPolling(live);
  wireControls();
  wireFormTests();
  wireSnapshot();
});

// "Teach it your faces": start, follow the prompts, then show the before/after figures.
function wireTeach() {
  const root = document.querySelector("[data-teach]");
  if (!root) return;
  const $ = (name) => root.querySelector(`[data-teach-${name}]`);
  const percent = (v) => `${Math.round((v || 0) * 100)} %`;
  function fail(message) {
    $("error").hidden = false;
    $("error").textContent = message;
  }
  async function showResult() {
    const response = await postJson(root.dataset.teachFinish, {});
    const result = await response.json();
    if (!response.ok) { fail(result.error || "failed"); return; }
    $("live").hidden = true;
    $("result").hidden = false;
    $("before").textContent = percent(result.accuracy_before);
    $("after").textContent = percent(result.accuracy_after);
    $("counts").replaceChildren(...Object.entries(result.counts || {}).map(([emotion, n]) => {
      const li = document.createElement("li");
      li.textContent = `${emotion}: ${n} frames`;
      return li;
    }));
  }
  async function poll() {
    const response = await fetch(root.dataset.teach, { credentials: "same-origin" });
    const state = await response.json();
    if (!response.ok) { fail(state.error || "failed"); return; }
    if (!state.active) { showResult(); return; }
    $("instruction").textContent = state.recording ? state.instruction : `Next: ${state.instruction}`;
    $("countdown").textContent = `${Math.ceil(state.seconds_left)} s`;
    $("face").textContent = state.face_found ? "yes" : "no";
    setTimeout(poll, 250);
  }
  $("go").addEventListener("click", async () => {
    $("error").hidden = true;
    $("result").hidden = true;
    const response = await postJson(root.dataset.teachStart, {});
    if (!response.ok) { fail((await response.json()).error || "failed"); return; }
    $("go").hidden = true;
    $("live").hidden = false;
    poll();
  });
}

// The status page's "Wrong mood? It was …".
function wireCorrect() {
  const form = document.querySelector("[data-correct]");
  if (!form) return;
  const result = form.querySelector("[data-correct-result]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await postJson(form.dataset.correct, { right: form.elements.right.value });
    const answer = await response.json();
    result.textContent = response.ok ? `Thanks: ${answer.frames} frames relabelled.` : answer.error;
  });
}

// Forms that destroy something ask first (data-confirm holds the question).
function wireConfirm() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireTeach();
  wireCorrect();
  wireConfirm();
});
