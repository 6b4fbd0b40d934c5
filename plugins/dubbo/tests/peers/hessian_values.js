'use strict';

// Values of every hessian2 type as hessian.js (the encoder dubbo-remoting uses) writes
// them, for the skipper's tests. Usage: node hessian_values.js > ../data/hessian_values.json
// Prints [{"name":..., "hex":..., "text":<the string, for strings>}].

const hessian = require('dubbo-remoting/node_modules/hessian.js');
const java = require('js-to-java');

const long = 'ab€😀'.repeat(20000); // > 32768 units: chunked, 1-4 byte characters
const values = {
  null: null,
  true: true,
  int_small: 5,
  int_two: -1000,
  int_three: 200000,
  int_full: 2147483647,
  long_small: java.long(7),
  long_big: java.long('9007199254740993'),
  double_zero: 0.0,
  double: 3.25,
  double_full: 1e300,
  date: new Date(1700000000000),
  bytes_short: Buffer.alloc(10, 1),
  bytes_long: Buffer.alloc(70000, 2),
  string_empty: '',
  string_short: 'hello',
  string_medium: 'x'.repeat(500),
  string_unicode: 'héllo wörld ✓ 😀',
  string_long: long,
  list: [ 1, 'two', [ 3 ] ],
  typed_list: java.array('java.lang.String', [ 'a', 'b' ]),
  map: { a: 1, b: { c: 'd' } },
  typed_map: java('java.util.HashMap', { k: 'v' }),
  object: java('com.example.Point', { x: 1, y: 2, label: 'p' }),
  objects_sharing_a_class: [ java('com.example.Point', { x: 1, y: 2 }), java('com.example.Point', { x: 3, y: 4 }) ],
};

const out = [];
for (const [ name, value ] of Object.entries(values)) {
  const encoder = new hessian.EncoderV2();
  encoder.write(value);
  const item = { name, hex: encoder.get().toString('hex') };
  if (typeof value === 'string') item.text = value;
  out.push(item);
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
