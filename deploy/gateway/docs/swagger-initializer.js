// Swagger UI over an OpenAPI document of this gateway: /api/docs/ shows the merged one
// (/api/openapi.json), /api/<service>/docs that service's (/api/<service>/openapi.json). A file of
// its own, not inline: a strict Content-Security-Policy can then forbid inline scripts.
window.onload = function () {
  var path = window.location.pathname;
  var document_url = /\/docs\/?$/.test(path)
    ? path.replace(/docs\/?$/, "openapi.json")
    : "/api/openapi.json";
  window.ui = SwaggerUIBundle({
    url: document_url,
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
};
