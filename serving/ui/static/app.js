// The prediction page's script: builds an instance from the form, calls this server's own
// :predict, and shows the answer, the version that gave it, the what-if chart, or the server's
// 400 next to the field it names. No library; the server validates, the page only explains.
"use strict";

const GRAMS_PER_POUND = 453.59237;
const SVG_NS = "http://www.w3.org/2000/svg";

const form = document.getElementById("predict-form");
const button = document.getElementById("predict-button");
const formError = document.getElementById("form-error");
const result = document.getElementById("result");
const whatIf = document.getElementById("what-if");

/** The form's values as one :predict instance, keyed by feature name. */
function instanceFromForm() {
  const instance = {};
  for (const element of form.querySelectorAll("[data-feature]")) {
    const name = element.dataset.feature;
    if (element.dataset.kind === "number") {
      const text = element.value.trim();
      // An empty box is sent as null: the server answers that the feature is required.
      instance[name] = text === "" ? null : Number(text);
    } else if (element.dataset.kind === "radio") {
      const checked = element.querySelector("input:checked");
      if (checked) instance[name] = checked.value;  // none picked: left out (the missing value)
    } else {
      instance[name] = element.value;
    }
  }
  return instance;
}

function fieldLabel(name) {
  const holder = document.getElementById("field-" + name);
  const label = holder && holder.querySelector("legend, label");
  return label ? label.firstChild.textContent.trim() : name;
}

function fieldUnit(name) {
  const input = document.getElementById(name);
  return (input && input.dataset.unit) || "";
}

/** The server's message for one field, in words ("Mother's age must be between 10 and 60"). */
function explain(name, problem) {
  const label = fieldLabel(name);
  const unit = fieldUnit(name);
  const range = /^(.+?) is outside the valid range (-?[\d.]+)\.\.(-?[\d.]+)$/.exec(problem);
  if (range) {
    return `${label} must be between ${range[2]} and ${range[3]}${unit ? " " + unit : ""}; ` +
      `${range[1]} is outside that range.`;
  }
  const number = / \(a number in (-?[\d.]+)\.\.(-?[\d.]+)\)$/.exec(problem);
  if (/^is required|^missing required/.test(problem)) {
    return `Please enter the ${label.toLowerCase()}` +
      (number ? ` (${number[1]} to ${number[2]}${unit ? " " + unit : ""}).` : ".");
  }
  if (/^expected a number/.test(problem)) {
    return `${label} must be a number` +
      (number ? ` between ${number[1]} and ${number[2]}${unit ? " " + unit : ""}.` : ".");
  }
  if (/is not in the vocabulary/.test(problem)) {
    return `${label}: please choose one of the listed options.`;
  }
  return `${label}: ${problem}`;
}

/**
 * Splits the server's 400 message into {index, field, problem}. Its format (serving/validation.py):
 * "instances[0].mother_age: 61 is outside the valid range 10..60", or "instances[0]: missing
 * required feature 'mother_age'"; field is null when the message names none.
 */
function parseServerError(message) {
  const where = /^instances\[(\d+)\](?:\.([A-Za-z_]\w*))?: ([\s\S]*)$/.exec(message);
  if (!where) return {index: null, field: null, problem: message};
  let field = where[2] || null;
  if (!field) {
    const named = /(?:missing required|unknown) feature '([A-Za-z_]\w*)'/.exec(where[3]);
    if (named) field = named[1];
  }
  return {index: Number(where[1]), field, problem: where[3]};
}

function clearErrors() {
  formError.hidden = true;
  formError.textContent = "";
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const holder of form.querySelectorAll(".field.invalid")) holder.classList.remove("invalid");
  for (const element of form.querySelectorAll("[aria-invalid]")) {
    element.removeAttribute("aria-invalid");
  }
}

function showFormError(text) {
  formError.textContent = text;
  formError.hidden = false;
}

/** Puts the server's error next to the field it names; elsewhere, under the form. */
function showServerError(message) {
  const {field, problem} = parseServerError(message);
  const holder = field && document.getElementById("field-" + field);
  if (!holder) {
    showFormError(`The server could not use these entries: ${message}`);
    return;
  }
  const error = document.getElementById(field + "-error");
  error.textContent = explain(field, problem);
  error.hidden = false;
  holder.classList.add("invalid");
  const control = holder.querySelector("[data-feature]");
  control.setAttribute("aria-invalid", "true");
  (holder.querySelector("input, select") || control).focus();
}

class ServerError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** POST {"instances": [...]} to :predict; resolves to {predictions, version}. */
async function predict(instances) {
  const response = await fetch(new URL(form.dataset.predictUrl, document.baseURI), {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({instances}),
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON: reported below by status
  }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error : response.statusText;
    throw new ServerError(response.status, message);
  }
  return {predictions: body.predictions.map(Number),
          version: response.headers.get(form.dataset.versionHeader)};
}

function formatGrams(grams) {
  return Math.round(grams).toLocaleString("en-US");
}

// Whole ounces, rounded once: 7.999 lb is "8 lb 0 oz", never "7 lb 16 oz"; the sign applies to
// the whole weight ("-0 lb 3 oz"), not to the pounds alone.
function poundsOunces(pounds) {
  const totalOunces = Math.round(Math.abs(pounds) * 16);
  const sign = pounds < 0 && totalOunces > 0 ? "-" : "";
  return `${sign}${Math.floor(totalOunces / 16)} lb ${totalOunces % 16} oz`;
}

function showResult(pounds, version) {
  const lb = document.getElementById("weight-lb");
  const g = document.getElementById("weight-g");
  lb.textContent = pounds.toFixed(2);
  lb.dataset.value = String(pounds);
  g.textContent = formatGrams(pounds * GRAMS_PER_POUND);
  g.dataset.value = String(pounds * GRAMS_PER_POUND);
  document.getElementById("weight-lb-oz").textContent = poundsOunces(pounds);
  const shown = document.getElementById("model-version");
  shown.textContent = version || "(not reported)";
  shown.dataset.value = version || "";
  result.hidden = false;
}

function svg(tag, attributes, parent) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

/** The what-if line: predicted pounds against weeks, the entered week marked. */
function drawChart(weeks, pounds, enteredWeek, version, mainVersion) {
  const width = 640, height = 240;
  const pad = {left: 48, right: 16, top: 14, bottom: 38};
  const low = Math.floor(Math.min(...pounds)) - 0.5, high = Math.ceil(Math.max(...pounds)) + 0.5;
  const x = (w) => pad.left + (w - weeks[0]) / (weeks[weeks.length - 1] - weeks[0] || 1) *
    (width - pad.left - pad.right);
  const y = (p) => height - pad.bottom - (p - low) / (high - low) * (height - pad.top - pad.bottom);
  const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img",
                            class: "what-if-svg",
                            "aria-label": `Predicted weight from ${pounds[0].toFixed(1)} lb at ` +
                              `${weeks[0]} weeks to ${pounds[pounds.length - 1].toFixed(1)} lb at ` +
                              `${weeks[weeks.length - 1]} weeks`});
  const axes = svg("g", {class: "axes"}, chart);
  const step = high - low > 6 ? 2 : 1;
  for (let p = Math.ceil(low); p <= high; p += step) {
    svg("line", {x1: pad.left, x2: width - pad.right, y1: y(p), y2: y(p), class: "grid"}, axes);
    svg("text", {x: pad.left - 6, y: y(p) + 4, class: "tick y"}, axes).textContent = `${p} lb`;
  }
  for (const w of weeks) {
    if (w % 2 !== 0) continue;
    svg("text", {x: x(w), y: height - pad.bottom + 16, class: "tick x"}, axes).textContent = w;
  }
  svg("text", {x: (pad.left + width - pad.right) / 2, y: height - 4, class: "axis-title"}, axes)
    .textContent = "gestation weeks";
  const points = weeks.map((w, i) => `${x(w).toFixed(1)},${y(pounds[i]).toFixed(1)}`);
  svg("polyline", {points: points.join(" "), class: "line"}, chart);
  const dots = svg("g", {class: "points"}, chart);
  weeks.forEach((w, i) => {
    const dot = svg("circle", {cx: x(w), cy: y(pounds[i]), r: w === enteredWeek ? 6 : 3.5,
                               class: w === enteredWeek ? "point entered" : "point",
                               "data-week": w, "data-value": pounds[i]}, dots);
    svg("title", {}, dot).textContent =
      `${w} weeks: ${pounds[i].toFixed(2)} lb (${formatGrams(pounds[i] * GRAMS_PER_POUND)} g)`;
  });
  const holder = document.getElementById("what-if-chart");
  holder.replaceChildren(chart);
  const caption = document.getElementById("what-if-caption");
  caption.textContent = weeks.includes(enteredWeek)
    ? `The larger dot is the entered week (${enteredWeek}).`
    : `The entered week (${enteredWeek}) is outside this range.`;
  if (version && mainVersion && version !== mainVersion) {
    caption.textContent += ` Answered by version ${version}: the model was updated meanwhile.`;
  }
  whatIf.dataset.version = version || "";
  whatIf.hidden = false;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  result.hidden = true;
  whatIf.hidden = true;
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    const instance = instanceFromForm();
    const main = await predict([instance]);
    showResult(main.predictions[0], main.version);
    // The what-if strip: one batched call, one instance per week.
    const feature = whatIf.dataset.feature;
    const weeks = whatIf.dataset.values.split(",").map(Number);
    const strip = await predict(weeks.map((w) => ({...instance, [feature]: w})));
    drawChart(weeks, strip.predictions, instance[feature], strip.version, main.version);
  } catch (error) {
    if (error instanceof ServerError && error.status === 400) {
      showServerError(error.message);
    } else if (error instanceof ServerError && error.status === 503) {
      showFormError("The server has no model version loaded yet; try again in a moment.");
    } else if (error instanceof ServerError) {
      showFormError(`The server answered ${error.status}: ${error.message}`);
    } else {
      showFormError(`Could not reach the server (${error.message}).`);
    }
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

form.addEventListener("submit", onSubmit);
// A corrected field loses its error mark at once.
form.addEventListener("input", (event) => {
  const holder = event.target.closest(".field");
  if (!holder || !holder.classList.contains("invalid")) return;
  holder.classList.remove("invalid");
  const error = holder.querySelector(".field-error");
  error.hidden = true;
  holder.querySelector("[data-feature]").removeAttribute("aria-invalid");
});
