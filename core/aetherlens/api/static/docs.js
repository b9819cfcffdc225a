// A small, self-contained renderer of /api/v1/openapi.json (no CDN, no inline script: the page's CSP
// allows only same-origin scripts). Builds the DOM node by node from text, never from HTML strings.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function resolve(doc, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return { name, schema: doc.components.schemas[name] };
  }
  return { name: null, schema };
}

function schemaBlock(doc, schema) {
  const { name, schema: s } = resolve(doc, schema);
  const text = JSON.stringify(s, null, 2);
  return el("div", {}, name ? el("div", {}, el("code", {}, name)) : "", el("pre", {}, text));
}

function operation(doc, path, method, op) {
  const summary = el(
    "summary", {},
    el("span", { class: "method " + method }, method.toUpperCase()),
    el("code", {}, path), " — ", op.summary || "",
    el("span", { class: "scope" }, op["x-scope"] ? "scope: " + op["x-scope"] : "public"),
  );
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "required"), el("th", {}, "schema")));
    for (const p of op.parameters) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.required ? "yes" : "no"),
        el("td", {}, el("code", {}, JSON.stringify(p.schema)))));
    }
    body.append(el("h4", {}, "Parameters"), table);
  }
  const reqBody = op.requestBody && op.requestBody.content["application/json"];
  if (reqBody) body.append(el("h4", {}, "Request body"), schemaBlock(doc, reqBody.schema));
  body.append(el("h4", {}, "Responses"));
  for (const [status, resp] of Object.entries(op.responses || {})) {
    const content = resp.content ? Object.values(resp.content)[0] : null;
    body.append(el("div", {}, el("strong", {}, status), " ", resp.description || ""));
    if (content && content.schema && Number(status) < 400) body.append(schemaBlock(doc, content.schema));
  }
  return el("details", { class: "op", id: op.operationId }, summary, body);
}

async function main() {
  const response = await fetch("/api/v1/openapi.json");
  const doc = await response.json();
  document.title = doc.info.title + " " + doc.info.version;
  const meta = document.getElementById("meta");
  meta.textContent = "Version " + doc.info.version + ". " + doc.info.description + " ";
  meta.append(el("a", { href: "/api/v1/openapi.json" }, "OpenAPI document"));
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operation(doc, path, method, op));
    }
  }
  const toc = document.getElementById("toc");
  const ops = document.getElementById("ops");
  for (const [tag, nodes] of [...groups.entries()].sort()) {
    toc.append(el("a", { href: "#tag-" + tag }, tag));
    ops.append(el("h2", { id: "tag-" + tag }, tag), ...nodes);
  }
}

main().catch((err) => {
  document.getElementById("meta").textContent = "Could not load the OpenAPI document: " + err;
});
