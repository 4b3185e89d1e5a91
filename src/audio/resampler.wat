;; Inner loops of src/audio/resampler.ts, assembled by scripts/assemble-wasm.ts into
;; src/audio/resampler-kernel.ts (test/audio-resampler.test.ts checks the two agree).
;;
;; Each resampler keeps its history resident in this memory, in a region of its own; `feed3`/`feed2`
;; append a chunk of PCM16 input to it and `up3`/`down2` run the cycles and drop the input they
;; consumed, so no history crosses the boundary.
;;
;; `up3`/`down2` run `cycles` polyphase cycles over the `len` history samples at $h, with a
;; coefficient table at $c laid out as in the resampler (tap d of branch k at d * L + k), and store
;; L PCM16 samples per cycle at $o. Every lane adds its products one tap at a time, in tap order,
;; with a separate multiply and add (no fused multiply-add), so each sample equals the scalar sum in
;; JavaScript in the same precision. `up3` (16 -> 24 kHz, the microphone path) works in f32, eight
;; cycles per pass in f32x4 lanes ($a* cycles c to c+3, $b* c+4 to c+7); `down2` in f64, four
;; cycles per pass in f64x2 lanes ($a* cycles c and c+1, $b* c+2 and c+3).
;; A last pass may run past the cycles the caller needs: it reads up to 7 (3) cycles of stale
;; history (past `len`) and writes their samples past the caller's, which the caller does not copy
;; out. Then the history's first cycles * M samples are dropped: the rest moves to $h.
(module
  (memory (export "memory") 1)

  ;; 24 -> 16 kHz history, split by sample index mod 3 so the kernel loads two cycles' samples at
  ;; once: sample 3i + r at $h + r * $third + 8i.
  ;; Appends $n PCM16 samples at $src to the $len history samples at $h.
  (func (export "feed2") (param $h i32) (param $len i32) (param $src i32) (param $n i32) (param $third i32)
    (local $end i32) (local $r i32) (local $at i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $r (i32.rem_u (local.get $len) (i32.const 3)))
    (local.set $at
      (i32.add
        (i32.add (local.get $h) (i32.mul (local.get $r) (local.get $third)))
        (i32.shl (i32.div_u (local.get $len) (i32.const 3)) (i32.const 3))))
    (block $done
      (loop $sample
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (f64.store (local.get $at) (f64.convert_i32_s (i32.load16_s (local.get $src))))
        (local.set $src (i32.add (local.get $src) (i32.const 2)))
        (if (i32.eq (local.get $r) (i32.const 2))
          (then
            (local.set $r (i32.const 0))
            (local.set $at
              (i32.add (i32.sub (local.get $at) (i32.shl (local.get $third) (i32.const 1))) (i32.const 8))))
          (else
            (local.set $r (i32.add (local.get $r) (i32.const 1)))
            (local.set $at (i32.add (local.get $at) (local.get $third)))))
        (br $sample))))

  ;; 16 -> 24 kHz history (f32), split by parity so the kernel loads four cycles' samples at once:
  ;; sample 2i at $h + 4i, sample 2i + 1 at $h + $half + 4i.
  ;; Appends $n PCM16 samples at $src to the $len history samples at $h.
  (func (export "feed3") (param $h i32) (param $len i32) (param $src i32) (param $n i32) (param $half i32)
    (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 1))))
    (if (i32.and (i32.and (local.get $len) (i32.const 1)) (i32.ne (local.get $n) (i32.const 0)))
      (then
        (f32.store
          (i32.add (i32.add (local.get $h) (local.get $half))
            (i32.shl (i32.shr_u (local.get $len) (i32.const 1)) (i32.const 2)))
          (f32.convert_i32_s (i32.load16_s (local.get $src))))
        (local.set $src (i32.add (local.get $src) (i32.const 2)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))))
    ;; $len is even from here: whole pairs, one to each half.
    (local.set $h (i32.add (local.get $h) (i32.shl (local.get $len) (i32.const 1))))
    (block $pairs
      (loop $pair
        (br_if $pairs (i32.gt_u (i32.add (local.get $src) (i32.const 4)) (local.get $end)))
        (local.set $v
          (f32x4.convert_i32x4_s
            (i32x4.extend_low_i16x8_s (v128.load32_zero (local.get $src)))))
        (v128.store32_lane 0 (local.get $h) (local.get $v))
        (v128.store32_lane 1 (i32.add (local.get $h) (local.get $half)) (local.get $v))
        (local.set $h (i32.add (local.get $h) (i32.const 4)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (br $pair)))
    (if (i32.lt_u (local.get $src) (local.get $end))
      (then (f32.store (local.get $h) (f32.convert_i32_s (i32.load16_s (local.get $src)))))))

  ;; Drops the first $drop of the $len history samples (2^$log2 bytes each) at $h.
  (func $shift (param $h i32) (param $drop i32) (param $len i32) (param $log2 i32)
    (memory.copy
      (local.get $h)
      (i32.add (local.get $h) (i32.shl (local.get $drop) (local.get $log2)))
      (i32.shl (i32.sub (local.get $len) (local.get $drop)) (local.get $log2))))

  ;; Rounds half away from zero, saturates to PCM16 and stores at $o.
  (func $pcm (param $o i32) (param $v f64)
    (i32.store16 (local.get $o)
      (i32.trunc_sat_f64_s
        (f64.min
          (f64.max
            (f64.add (local.get $v) (f64.copysign (f64.const 0.5) (local.get $v)))
            (f64.const -32768))
          (f64.const 32767)))))

  ;; The samples of four cycles of 16 -> 24 kHz, branch k of cycle j in lane j of $sk, as 12 PCM16
  ;; samples in cycle order at $o: each rounded half away from zero and saturated, as `$pcm` does
  ;; (in single precision, v + 0.5 may round, but below 2^23 never up to the next integer, so the
  ;; truncation agrees with double precision; larger sums saturate either way).
  (func $pcm12 (param $o i32) (param $s0 v128) (param $s1 v128) (param $s2 v128)
    (local $n01 v128) (local $n22 v128)
    (local.set $n01
      (i16x8.narrow_i32x4_s (call $round4 (local.get $s0)) (call $round4 (local.get $s1))))
    (local.set $n22
      (i16x8.narrow_i32x4_s (call $round4 (local.get $s2)) (call $round4 (local.get $s2))))
    ;; Samples 0 to 7: lanes 0 4 8 1 5 9 2 6 of ($n01, $n22); 8 to 11: lanes 10 3 7 11.
    (v128.store (local.get $o)
      (i8x16.shuffle 0 1 8 9 16 17 2 3 10 11 18 19 4 5 12 13 (local.get $n01) (local.get $n22)))
    (v128.store64_lane offset=16 0 (local.get $o)
      (i8x16.shuffle 20 21 6 7 14 15 22 23 0 0 0 0 0 0 0 0 (local.get $n01) (local.get $n22))))

  ;; Four f32 rounded half away from zero to i32 (saturating; NaN gives 0).
  (func $round4 (param $v v128) (result v128)
    (i32x4.trunc_sat_f32x4_s
      (f32x4.add (local.get $v)
        (v128.or (v128.and (local.get $v) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000))
          (v128.const f32x4 0.5 0.5 0.5 0.5)))))

  ;; 16 -> 24 kHz: L = 3 outputs per cycle, M = 2 input samples (one f32 of each half) between cycles.
  ;; History split as `feed3` writes it, coefficients f32; $taps is even.
  (func (export "up3") (param $h i32) (param $c i32) (param $taps i32) (param $cycles i32) (param $o i32)
    (param $len i32) (param $half i32)
    (local $passes i32) (local $h0 i32) (local $p i32) (local $r i32) (local $q i32) (local $end i32) (local $x v128) (local $y v128) (local $k v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $b0 v128) (local $b1 v128) (local $b2 v128)
    (local.set $h0 (local.get $h))
    (local.set $passes (i32.shr_u (i32.add (local.get $cycles) (i32.const 7)) (i32.const 3)))
    (block $done
      (br_if $done (i32.eqz (local.get $passes)))
      (loop $pass
        (local.set $a0 (v128.const i64x2 0 0))
        (local.set $a1 (v128.const i64x2 0 0))
        (local.set $a2 (v128.const i64x2 0 0))
        (local.set $b0 (v128.const i64x2 0 0))
        (local.set $b1 (v128.const i64x2 0 0))
        (local.set $b2 (v128.const i64x2 0 0))
        (local.set $p (local.get $h))
        (local.set $r (i32.add (local.get $h) (local.get $half)))
        (local.set $q (local.get $c))
        (local.set $end (i32.add (local.get $h) (i32.shl (local.get $taps) (i32.const 1))))
        (loop $tap
          ;; Even tap: cycles 0 to 3 read four neighbouring even samples, 4 to 7 the next four.
          (local.set $x (v128.load (local.get $p)))
          (local.set $y (v128.load offset=16 (local.get $p)))
          (local.set $k (v128.load32_splat (local.get $q)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $y) (local.get $k))))
          (local.set $k (v128.load32_splat offset=4 (local.get $q)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $y) (local.get $k))))
          (local.set $k (v128.load32_splat offset=8 (local.get $q)))
          (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (local.get $y) (local.get $k))))
          ;; Odd tap: the same from the odd half.
          (local.set $x (v128.load (local.get $r)))
          (local.set $y (v128.load offset=16 (local.get $r)))
          (local.set $k (v128.load32_splat offset=12 (local.get $q)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $y) (local.get $k))))
          (local.set $k (v128.load32_splat offset=16 (local.get $q)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $y) (local.get $k))))
          (local.set $k (v128.load32_splat offset=20 (local.get $q)))
          (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $x) (local.get $k))))
          (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (local.get $y) (local.get $k))))
          (local.set $q (i32.add (local.get $q) (i32.const 24)))
          (local.set $r (i32.add (local.get $r) (i32.const 4)))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (br_if $tap (i32.lt_u (local.get $p) (local.get $end))))
        (call $pcm12 (local.get $o) (local.get $a0) (local.get $a1) (local.get $a2))
        (call $pcm12 (i32.add (local.get $o) (i32.const 24)) (local.get $b0) (local.get $b1) (local.get $b2))
        (local.set $o (i32.add (local.get $o) (i32.const 48)))
        (local.set $h (i32.add (local.get $h) (i32.const 32)))
        (br_if $pass (local.tee $passes (i32.sub (local.get $passes) (i32.const 1))))))
    ;; Each half drops $cycles samples.
    (call $shift (local.get $h0) (local.get $cycles)
      (i32.shr_u (i32.add (local.get $len) (i32.const 1)) (i32.const 1)) (i32.const 2))
    (call $shift
      (i32.add (local.get $h0) (local.get $half)) (local.get $cycles) (i32.shr_u (local.get $len) (i32.const 1))
      (i32.const 2)))

  ;; 24 -> 16 kHz: L = 2 outputs per cycle, M = 3 input samples (one f64 of each third) between
  ;; cycles. History split as `feed2` writes it.
  (func (export "down2") (param $h i32) (param $c i32) (param $taps i32) (param $cycles i32) (param $o i32)
    (param $len i32) (param $third i32)
    (local $passes i32) (local $h0 i32) (local $p i32) (local $r i32) (local $s i32) (local $q i32)
    (local $left i32) (local $x v128) (local $y v128) (local $k v128)
    (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128)
    (local.set $h0 (local.get $h))
    (local.set $passes (i32.shr_u (i32.add (local.get $cycles) (i32.const 3)) (i32.const 2)))
    (block $done
      (br_if $done (i32.eqz (local.get $passes)))
      (loop $pass
        (local.set $a0 (v128.const i64x2 0 0))
        (local.set $a1 (v128.const i64x2 0 0))
        (local.set $b0 (v128.const i64x2 0 0))
        (local.set $b1 (v128.const i64x2 0 0))
        (local.set $p (local.get $h))
        (local.set $r (i32.add (local.get $h) (local.get $third)))
        (local.set $s (i32.add (local.get $r) (local.get $third)))
        (local.set $q (local.get $c))
        (local.set $left (local.get $taps))
        (block $taps
          (loop $tap
            ;; Taps 3j, 3j + 1, 3j + 2 from the thirds in turn (the last round may stop early).
            (local.set $x (v128.load (local.get $p)))
            (local.set $y (v128.load offset=16 (local.get $p)))
            (local.set $k (v128.load64_splat (local.get $q)))
            (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b0 (f64x2.add (local.get $b0) (f64x2.mul (local.get $y) (local.get $k))))
            (local.set $k (v128.load64_splat offset=8 (local.get $q)))
            (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b1 (f64x2.add (local.get $b1) (f64x2.mul (local.get $y) (local.get $k))))
            (br_if $taps (i32.eqz (local.tee $left (i32.sub (local.get $left) (i32.const 1)))))
            (local.set $x (v128.load (local.get $r)))
            (local.set $y (v128.load offset=16 (local.get $r)))
            (local.set $k (v128.load64_splat offset=16 (local.get $q)))
            (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b0 (f64x2.add (local.get $b0) (f64x2.mul (local.get $y) (local.get $k))))
            (local.set $k (v128.load64_splat offset=24 (local.get $q)))
            (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b1 (f64x2.add (local.get $b1) (f64x2.mul (local.get $y) (local.get $k))))
            (br_if $taps (i32.eqz (local.tee $left (i32.sub (local.get $left) (i32.const 1)))))
            (local.set $x (v128.load (local.get $s)))
            (local.set $y (v128.load offset=16 (local.get $s)))
            (local.set $k (v128.load64_splat offset=32 (local.get $q)))
            (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b0 (f64x2.add (local.get $b0) (f64x2.mul (local.get $y) (local.get $k))))
            (local.set $k (v128.load64_splat offset=40 (local.get $q)))
            (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (local.get $x) (local.get $k))))
            (local.set $b1 (f64x2.add (local.get $b1) (f64x2.mul (local.get $y) (local.get $k))))
            (local.set $q (i32.add (local.get $q) (i32.const 48)))
            (local.set $p (i32.add (local.get $p) (i32.const 8)))
            (local.set $r (i32.add (local.get $r) (i32.const 8)))
            (local.set $s (i32.add (local.get $s) (i32.const 8)))
            (br_if $tap (local.tee $left (i32.sub (local.get $left) (i32.const 1))))))
        (call $pcm (local.get $o) (f64x2.extract_lane 0 (local.get $a0)))
        (call $pcm (i32.add (local.get $o) (i32.const 2)) (f64x2.extract_lane 0 (local.get $a1)))
        (call $pcm (i32.add (local.get $o) (i32.const 4)) (f64x2.extract_lane 1 (local.get $a0)))
        (call $pcm (i32.add (local.get $o) (i32.const 6)) (f64x2.extract_lane 1 (local.get $a1)))
        (call $pcm (i32.add (local.get $o) (i32.const 8)) (f64x2.extract_lane 0 (local.get $b0)))
        (call $pcm (i32.add (local.get $o) (i32.const 10)) (f64x2.extract_lane 0 (local.get $b1)))
        (call $pcm (i32.add (local.get $o) (i32.const 12)) (f64x2.extract_lane 1 (local.get $b0)))
        (call $pcm (i32.add (local.get $o) (i32.const 14)) (f64x2.extract_lane 1 (local.get $b1)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (local.set $h (i32.add (local.get $h) (i32.const 32)))
        (br_if $pass (local.tee $passes (i32.sub (local.get $passes) (i32.const 1))))))
    ;; Each third drops $cycles samples (of the longest third's count; the others move a stale one).
    (local.set $len (i32.div_u (i32.add (local.get $len) (i32.const 2)) (i32.const 3)))
    (call $shift (local.get $h0) (local.get $cycles) (local.get $len) (i32.const 3))
    (call $shift (i32.add (local.get $h0) (local.get $third)) (local.get $cycles) (local.get $len) (i32.const 3))
    (call $shift
      (i32.add (local.get $h0) (i32.shl (local.get $third) (i32.const 1))) (local.get $cycles) (local.get $len)
      (i32.const 3)))
)
