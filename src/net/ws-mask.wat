;; WebSocket masking (RFC 6455 §5.3) for src/net/ws-mask.ts, assembled by scripts/assemble-wasm.ts
;; into src/net/ws-mask-kernel.ts (test/net-ws-mask.test.ts checks the two agree).
;;
;; `xor` masks (or unmasks: the same operation) $n bytes at $p in place with the 4-byte key $k,
;; read as a little-endian word, so byte i of the payload is XORed with byte i mod 4 of the key.
;; Sixteen bytes per step in an i32x4 lane of the key, then the rest one byte at a time, the key
;; turned by a byte after each.
(module
  (memory (export "memory") 1)

  (func (export "xor") (param $p i32) (param $n i32) (param $k i32)
    (local $end i32) (local $key v128)
    (local.set $key (i32x4.splat (local.get $k)))
    (local.set $end (i32.add (local.get $p) (i32.and (local.get $n) (i32.const -16))))
    (block $wide_done
      (loop $wide
        (br_if $wide_done (i32.ge_u (local.get $p) (local.get $end)))
        (v128.store (local.get $p) (v128.xor (v128.load (local.get $p)) (local.get $key)))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $wide)))
    (local.set $end (i32.add (local.get $end) (i32.and (local.get $n) (i32.const 15))))
    (block $bytes_done
      (loop $bytes
        (br_if $bytes_done (i32.ge_u (local.get $p) (local.get $end)))
        (i32.store8 (local.get $p) (i32.xor (i32.load8_u (local.get $p)) (local.get $k)))
        (local.set $k (i32.rotr (local.get $k) (i32.const 8)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $bytes))))
)
