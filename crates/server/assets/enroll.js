// The enrolment page's only script: creates a passkey for this server's
// domain and posts it back; the computer then pins it.
const form = document.getElementById("enroll-form");
const problem = document.getElementById("enroll-problem");

const decode = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "===".slice((base64.length + 3) % 4)), (c) => c.charCodeAt(0));
};
const encode = (buffer) =>
  btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

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
        pubKeyCredParams: [
          { type: "public-key", alg: -7 },
          { type: "public-key", alg: -8 },
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
