// The other end of bench/wakeCost.ts: answers every IPC message with itself.
process.on('message', (message) => process.send(message));
process.on('disconnect', () => process.exit(0));
