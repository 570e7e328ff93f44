DROP TABLE signaling_rooms;
