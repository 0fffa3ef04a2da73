// The approval page's only script, for a computer that requires passkeys:
// Allow runs the WebAuthn ceremony over the request's challenge, and the
// form carries the assertion to the server (and on to the computer).
import { decode, encode } from "./base64url.js";

const form = document.getElementById("passkey-form");
const problem = document.getElementById("passkey-problem");

form?.addEventListener("submit", async (event) => {
  if (event.submitter?.value !== "allow" || form.elements.assertion.value) return;
  event.preventDefault();
  const button = event.submitter;
  problem.hidden = true;
  try {
    const credential = await navigator.credentials.get({
      publicKey: {
        challenge: decode(form.dataset.challenge),
        rpId: form.dataset.rpId,
        allowCredentials: form.dataset.credentials
          .split(",")
          .filter(Boolean)
          .map((id) => ({ type: "public-key", id: decode(id) })),
        userVerification: "required",
        timeout: 120000,
      },
    });
    form.elements.assertion.value = JSON.stringify({
      credential_id: encode(credential.rawId),
      authenticator_data: encode(credential.response.authenticatorData),
      client_data_json: encode(credential.response.clientDataJSON),
      signature: encode(credential.response.signature),
    });
    form.requestSubmit(button);
  } catch (error) {
    problem.textContent = `The passkey did not answer: ${error.message}`;
    problem.hidden = false;
  }
});
