// Bridge to LiveKit's official Node server SDK for crates/livekit's interop tests: reads one JSON
// request on stdin, writes one JSON answer on stdout.
import { createHash } from 'node:crypto';
import { AccessToken, RoomServiceClient, TokenVerifier } from 'livekit-server-sdk';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

async function run() {
  switch (input.op) {
    case 'verify-tokens': {
      const verifier = new TokenVerifier(input.apiKey, input.apiSecret);
      const out = {};
      for (const [name, token] of Object.entries(input.tokens)) {
        try {
          const claims = await verifier.verify(token);
          out[name] = { ok: true, sub: claims.sub, name: claims.name, video: claims.video };
        } catch (error) {
          out[name] = { ok: false, error: String(error) };
        }
      }
      return out;
    }
    case 'sign-webhook': {
      const token = new AccessToken(input.apiKey, input.apiSecret);
      token.sha256 = createHash('sha256').update(input.body).digest('base64');
      return { authorization: await token.toJwt() };
    }
    case 'room-service': {
      const client = new RoomServiceClient(input.url, input.apiKey, input.apiSecret);
      const room = await client.createRoom({ name: input.room, emptyTimeout: 120 });
      const rooms = await client.listRooms([input.room]);
      const participants = await client.listParticipants(input.room);
      await client.deleteRoom(input.room);
      return { created: room.name, emptyTimeout: room.emptyTimeout, listed: rooms.map((r) => r.name), participants: participants.map((p) => p.identity) };
    }
    default:
      throw new Error(`unknown op ${input.op}`);
  }
}

try {
  process.stdout.write(JSON.stringify(await run()));
} catch (error) {
  process.stdout.write(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }));
  process.exitCode = 1;
}
