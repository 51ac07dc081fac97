import assert from "node:assert/strict";
import {
  editObject,
  rawMember,
  scanObject,
} from "../../src/protocol/json_object.ts";

Deno.test("scanObject finds top-level members and skips nested ones", () => {
  const text = ' { "a" : 1, "b":{"a":[1,{"c":"}"}]}, "c" :"x\\"y", "d":null } ';
  const scanned = scanObject(text);
  assert.deepEqual(scanned.members.map((m) => m.key), ["a", "b", "c", "d"]);
  assert.equal(rawMember(scanned, "b"), '{"a":[1,{"c":"}"}]}');
  assert.equal(rawMember(scanned, "c"), '"x\\"y"');
  assert.equal(rawMember(scanned, "missing"), undefined);
});

Deno.test("scanObject handles empty objects, escaped keys and trailing backslashes", () => {
  assert.deepEqual(scanObject("{}").members, []);
  assert.deepEqual(scanObject(" { } ").members, []);
  const scanned = scanObject('{"\\u006dax_tokens":5,"s":"a\\\\","t":true}');
  assert.deepEqual(scanned.members.map((m) => m.key), ["max_tokens", "s", "t"]);
  assert.equal(rawMember(scanned, "s"), '"a\\\\"');
});

Deno.test("rawMember returns the last duplicate, as JSON.parse does", () => {
  assert.equal(rawMember(scanObject('{"a":1,"a":2}'), "a"), "2");
});

Deno.test("editObject keeps untouched members byte for byte", () => {
  const text =
    '{"model":"m","seed":12345678901234567890,"t":1.0,"e":1e400,"max_tokens":32}';
  const edited = editObject(scanObject(text), {
    set: { max_tokens: "1", stream: "false" },
  });
  assert.equal(
    edited,
    '{"model":"m","seed":12345678901234567890,"t":1.0,"e":1e400,"max_tokens":1,"stream":false}',
  );
});

Deno.test("editObject removes members and adds new ones last", () => {
  const text =
    '{"stream":true,"stream_options":{"include_usage":true},"x":[1]}';
  const edited = editObject(scanObject(text), {
    set: { stream: "false", kv: '{"a":null}' },
    remove: ["stream_options"],
  });
  assert.equal(edited, '{"stream":false,"x":[1],"kv":{"a":null}}');
  assert.deepEqual(JSON.parse(edited), {
    stream: false,
    x: [1],
    kv: { a: null },
  });
});

Deno.test("editObject on an empty object adds members", () => {
  assert.equal(editObject(scanObject("{}"), { set: { a: "1" } }), '{"a":1}');
});

Deno.test("editObject replaces every duplicate of a key in place, adding none", () => {
  const edited = editObject(scanObject('{"a":1,"b":2,"a":3}'), {
    set: { a: "9" },
  });
  assert.equal(edited, '{"a":9,"b":2,"a":9}');
});

Deno.test("editObject puts a key that is both removed and set last", () => {
  const edited = editObject(scanObject('{"a":1,"b":2}'), {
    set: { a: "9" },
    remove: ["a"],
  });
  assert.equal(edited, '{"b":2,"a":9}');
});

Deno.test("editObject can remove every member", () => {
  const edited = editObject(scanObject('{"a":1,"b":2}'), {
    remove: ["a", "b"],
  });
  assert.equal(edited, "{}");
});
