// face-api.js's expression network on 48x48 grey faces, run by face-api's own code (pure-JS
// TensorFlow.js, WebAssembly backend): node faceapi_scores.cjs MODEL_DIR FACES.u8 COUNT OUT.f32
// FACES.u8 holds COUNT faces of 48x48 uint8; each is given to face-api as a grey RGB tensor, which
// it pads to a square (a no-op), resizes to 112x112 and normalises itself. OUT.f32 gets COUNT x 7
// float32 probabilities in face-api's FACE_EXPRESSION_LABELS order, printed on the last line.
// Modules come from NODE_PATH (`make teachers` installs them under build/teachers/js).
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const fs = require('fs');

async function main() {
  const [dir, facesPath, count, outPath] = process.argv.slice(2);
  await tf.setBackend('wasm');
  await tf.ready();
  const manifest = JSON.parse(fs.readFileSync(`${dir}/face_expression_model-weights_manifest.json`));
  const bin = fs.readFileSync(`${dir}/face_expression_model.bin`);
  const buffer = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length);
  faceapi.nets.faceExpressionNet.loadFromWeightMap(tf.io.decodeWeights(buffer, manifest[0].weights));
  const faces = fs.readFileSync(facesPath);
  const n = Number(count);
  const side = 48 * 48;
  const out = new Float32Array(n * 7);
  for (let i = 0; i < n; i++) {
    const expressions = await tf.tidy(() => {
      const grey = tf.tensor3d(faces.subarray(i * side, (i + 1) * side), [48, 48, 1], 'int32');
      return tf.concat([grey, grey, grey], 2);
    });
    const e = await faceapi.nets.faceExpressionNet.predictExpressions(expressions);
    expressions.dispose();
    faceapi.FACE_EXPRESSION_LABELS.forEach((label, j) => { out[i * 7 + j] = e[label]; });
  }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
  console.log(faceapi.FACE_EXPRESSION_LABELS.join(','));
}

main();
