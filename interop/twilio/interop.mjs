// Bridge to Twilio's official Node helper library for services/telephony's interop tests: reads
// one JSON request on stdin, writes one JSON answer on stdout.
import twilio from 'twilio';
import jwt from 'jsonwebtoken';

const { getExpectedTwilioSignature, validateRequest, validateRequestWithBody } = twilio;
const { VoiceResponse } = twilio.twiml;
const { AccessToken } = twilio.jwt;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

// Builds the verbs of one TwiML document: [{verb, attrs, text, nouns: [{noun, attrs, text}]}].
function twimlOf(verbs) {
  const response = new VoiceResponse();
  for (const { verb, attrs = {}, text, nouns = [] } of verbs) {
    switch (verb) {
      case 'say': response.say(attrs, text); break;
      case 'record': response.record(attrs); break;
      case 'hangup': response.hangup(); break;
      case 'dial': {
        const dial = response.dial(attrs);
        for (const noun of nouns) {
          if (noun.noun === 'client') dial.client(noun.attrs || {}, noun.text);
          else if (noun.noun === 'number') dial.number(noun.attrs || {}, noun.text);
          else if (noun.noun === 'conference') dial.conference(noun.attrs || {}, noun.text);
          else throw new Error(`unknown noun ${noun.noun}`);
        }
        break;
      }
      default: throw new Error(`unknown verb ${verb}`);
    }
  }
  return response.toString();
}

function run() {
  switch (input.op) {
    // For each case: the signature the library computes for `signUrl` (default `url`) and
    // `params`, and whether it accepts each candidate signature for a request to `url` (for JSON
    // cases, `validateRequestWithBody` with `body`).
    case 'signatures':
      return input.cases.map((c) => {
        try {
          const expected = getExpectedTwilioSignature(c.authToken, c.signUrl || c.url, c.json ? {} : c.params);
          const valid = c.candidates.map((candidate) =>
            c.json
              ? validateRequestWithBody(c.authToken, candidate, c.url, c.body)
              : validateRequest(c.authToken, candidate, c.url, c.params));
          return { expected, valid };
        } catch (error) {
          return { error: String(error && error.stack ? error.stack : error) };
        }
      });
    case 'twiml':
      return input.documents.map(twimlOf);
    case 'voice-token': {
      const token = new AccessToken(input.accountSid, input.keySid, input.secret, { identity: input.identity, ttl: input.ttl });
      const grant = { incomingAllow: true };
      if (input.outgoingApplicationSid) grant.outgoingApplicationSid = input.outgoingApplicationSid;
      if (input.pushCredentialSid) grant.pushCredentialSid = input.pushCredentialSid;
      token.addGrant(new AccessToken.VoiceGrant(grant));
      return { token: token.toJwt() };
    }
    // Verifies a token with the library's own jsonwebtoken, as Twilio's servers check HS256.
    case 'verify-token': {
      try {
        const decoded = jwt.verify(input.token, input.secret, { algorithms: ['HS256'], complete: true });
        return { ok: true, header: decoded.header, payload: decoded.payload };
      } catch (error) {
        return { ok: false, error: String(error) };
      }
    }
    default:
      throw new Error(`unknown op ${input.op}`);
  }
}

try {
  process.stdout.write(JSON.stringify(run()));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }));
  process.exitCode = 1;
}
