// Preloaded into the Portkey gateway for the bench only. Portkey 1.15.2 with the @hono/node-server it installs
// (1.19) fails every streaming request with "TypeError: immutable" (Portkey-AI/gateway#1389): it appends headers
// to the upstream fetch() response, whose headers are immutable. This hands it a copy with mutable headers (one
// copy per request, none per token), which is what the gateway's own patch achieves.
const originalFetch = globalThis.fetch;
const OriginalResponse = globalThis.Response;
globalThis.fetch = async (...args) => {
  const response = await originalFetch(...args);
  return new OriginalResponse(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};
