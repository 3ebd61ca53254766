// A worker that says hello and exits as soon as the hello has left: whatever the primary sends it afterwards goes to
// a closed channel (see clusterParts.test.ts).
process.send({ regservice: [{ kind: 'note', method: 'hello', args: [] }] }, undefined, {}, () => process.exit(0));
