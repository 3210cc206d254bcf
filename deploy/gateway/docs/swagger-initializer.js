// Swagger UI over the gateway's merged document (a file of its own, not inline: a strict
// Content-Security-Policy can then forbid inline scripts).
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
  });
};
