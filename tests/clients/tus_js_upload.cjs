// Uploads a file to a satchel upload URL with tus-js-client (npm) under node, as a web or
// React Native client would: in chunks, retrying (and resuming from HEAD's offset) after a
// failed request.
//
//     NODE_PATH=.../node_modules node tus_js_upload.cjs URL FILE CHUNK_BYTES
//
// Prints {"url", "mediaId"} as JSON; exits 1 on a failure it gives up on.
const fs = require('fs');
const tus = require('tus-js-client');

const [endpoint, path, chunk] = process.argv.slice(2);
const upload = new tus.Upload(fs.readFileSync(path), {
  endpoint,
  chunkSize: Number(chunk),
  retryDelays: [0, 200, 500, 1000, 2000, 3000, 5000],
  metadata: { filename: 'tus-js.bin' },
  onError(error) {
    console.error(`tus-js-client gave up: ${error}`);
    process.exit(1);
  },
  onSuccess(payload) {
    const last = payload && payload.lastResponse;
    const mediaId = last ? last.getHeader('Satchel-Media-Id') : null;
    console.log(JSON.stringify({ url: upload.url, mediaId }));
  },
});
upload.start();
