// The enrolment page's only script: creates a passkey for this server's
// domain and posts it back; the computer then pins it.
import { decode, encode } from "./base64url.js";

const form = document.getElementById("enroll-form");
const problem = document.getElementById("enroll-problem");

form?.addEventListener("submit", async (event) => {
  if (form.elements.credential.value) return;
  event.preventDefault();
  problem.hidden = true;
  try {
    const credential = await navigator.credentials.create({
      publicKey: {
        challenge: decode(form.dataset.challenge),
        rp: { id: form.dataset.rpId, name: "Doorman" },
        user: { id: decode(form.dataset.userId), name: form.dataset.userName, displayName: form.dataset.userName },
        // ES256, Ed25519, and RS256 (some Windows Hello authenticators
        // make nothing else).
        pubKeyCredParams: [
          { type: "public-key", alg: -7 },
          { type: "public-key", alg: -8 },
          { type: "public-key", alg: -257 },
        ],
        authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
        attestation: "none",
        timeout: 120000,
      },
    });
    form.elements.credential.value = JSON.stringify({
      attestation_object: encode(credential.response.attestationObject),
      client_data_json: encode(credential.response.clientDataJSON),
    });
    form.requestSubmit();
  } catch (error) {
    problem.textContent = `No passkey was created: ${error.message}`;
    problem.hidden = false;
  }
});
