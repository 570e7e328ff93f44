// The benchmark's reference: a socket.io 4.8 server doing the same relay as the Rust one
// (join-room → joined-room; webrtc-signal → the room except the sender, with the sender's id).
import { Server } from "socket.io";

const port = Number(process.argv[2] || 0);
const io = new Server(port, { transports: ["websocket"], maxHttpBufferSize: 64 * 1024 });
io.of("/video-call").on("connection", (socket) => {
  socket.on("join-room", (data) => {
    socket.join(data.roomId);
    socket.emit("joined-room", { roomId: data.roomId });
  });
  socket.on("webrtc-signal", (data) => {
    socket.to(data.roomId).emit("webrtc-signal", { roomId: data.roomId, userId: socket.id, signal: data.signal });
  });
});
console.log("listening");
