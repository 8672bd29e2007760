// Reference outputs of a TFJS graph model from the pure-JavaScript @tensorflow/tfjs (CPU).
// usage: node tfjs_reference.js MODEL_JSON INPUT_BIN INPUT_SHAPE(comma) INPUT_DTYPE OUT_DIR NAME...
// Writes OUT_DIR/<k>.bin (float32 little-endian) and OUT_DIR/shapes.json ([[dims], ...]).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelJson, inputBin, shapeArg, dtype, outDir, ...names] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
  const dir = path.dirname(modelJson);
  const specs = [];
  const buffers = [];
  for (const group of model.weightsManifest) {
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  // A custom IO handler: file:// loading needs tfjs-node, which we do not use.
  const handler = {load: async () => ({modelTopology: model.modelTopology, weightSpecs: specs,
                                       weightData, format: model.format,
                                       signature: model.signature})};
  const graph = await tf.loadGraphModel(handler);
  const shape = shapeArg.split(',').map(Number);
  const raw = fs.readFileSync(inputBin);
  const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const input = dtype === 'int32' ? tf.tensor(Int32Array.from(values), shape, 'int32')
                                  : tf.tensor(values, shape, 'float32');
  let outs = graph.execute(input, names);
  if (!Array.isArray(outs)) outs = [outs];
  const shapes = [];
  for (let k = 0; k < outs.length; k++) {
    const data = await outs[k].data();
    fs.writeFileSync(path.join(outDir, `${k}.bin`), Buffer.from(new Float32Array(data).buffer));
    shapes.push(outs[k].shape);
  }
  fs.writeFileSync(path.join(outDir, 'shapes.json'), JSON.stringify(shapes));
}
main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
