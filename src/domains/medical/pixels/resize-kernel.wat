;; The letterbox's resize (pixel-pipeline.util.ts, resizeBilinearInto) in WebAssembly SIMD, with the same
;; doubles: every output is a sum, in tap order, of f64 products of a float32 sample and an f64 weight,
;; as the JavaScript version adds them; two outputs go through the two lanes of an f64x2 at a time.
;; No fused multiply-add (WebAssembly has none in SIMD128), so the lanes round as the scalar code does.
;; resize-kernel.wasm.ts holds the assembled bytes: `npm run wasm:build` writes it from this file.
;;
;; The caller (resize-wasm.ts) lays out the one memory and grows it; all offsets are in bytes.
;; A "pair" buffer holds two input rows side by side as f64 (row a's value i at 16i, row b's at 16i+8).
(module
  (memory (export "memory") 1)

  ;; Two rows of interleaved 8-bit RGB -> their luma (lr*R + lg*G + lb*B, rounded to float32 as the
  ;; JavaScript row buffer rounds it), as pairs.
  (func (export "pairRgb8") (param $a i32) (param $b i32) (param $w i32) (param $pair i32)
    (param $lr f64) (param $lg f64) (param $lb f64)
    (local $end i32)
    (local.set $end (i32.add (local.get $pair) (i32.shl (local.get $w) (i32.const 4))))
    (block $done
      (loop $px
        (br_if $done (i32.ge_u (local.get $pair) (local.get $end)))
        (f64.store (local.get $pair)
          (f64.promote_f32 (f32.demote_f64
            (f64.add
              (f64.add
                (f64.mul (local.get $lr) (f64.convert_i32_u (i32.load8_u (local.get $a))))
                (f64.mul (local.get $lg) (f64.convert_i32_u (i32.load8_u offset=1 (local.get $a)))))
              (f64.mul (local.get $lb) (f64.convert_i32_u (i32.load8_u offset=2 (local.get $a))))))))
        (f64.store offset=8 (local.get $pair)
          (f64.promote_f32 (f32.demote_f64
            (f64.add
              (f64.add
                (f64.mul (local.get $lr) (f64.convert_i32_u (i32.load8_u (local.get $b))))
                (f64.mul (local.get $lg) (f64.convert_i32_u (i32.load8_u offset=1 (local.get $b)))))
              (f64.mul (local.get $lb) (f64.convert_i32_u (i32.load8_u offset=2 (local.get $b))))))))
        (local.set $a (i32.add (local.get $a) (i32.const 3)))
        (local.set $b (i32.add (local.get $b) (i32.const 3)))
        (local.set $pair (i32.add (local.get $pair) (i32.const 16)))
        (br $px))))

  ;; Two rows of float32 -> pairs.
  (func (export "pairF32") (param $a i32) (param $b i32) (param $w i32) (param $pair i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $pair) (i32.shl (local.get $w) (i32.const 4))))
    (block $done
      (loop $px
        (br_if $done (i32.ge_u (local.get $pair) (local.get $end)))
        (f64.store (local.get $pair) (f64.promote_f32 (f32.load (local.get $a))))
        (f64.store offset=8 (local.get $pair) (f64.promote_f32 (f32.load (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 4)))
        (local.set $b (i32.add (local.get $b) (i32.const 4)))
        (local.set $pair (i32.add (local.get $pair) (i32.const 16)))
        (br $px))))

  ;; Horizontal pass over one pair of rows: output x of row a (lane 0) and of row b (lane 1) is the sum
  ;; over k < taps of pair[first[x] + k] * weights[x * taps + k]; written as float32 to outA[x], outB[x].
  (func (export "horizontal") (param $pair i32) (param $first i32) (param $weights i32) (param $taps i32)
    (param $ow i32) (param $outA i32) (param $outB i32)
    (local $x i32) (local $k i32) (local $src i32) (local $wt i32) (local $acc v128)
    (local.set $wt (local.get $weights))
    (block $rowDone
      (loop $out
        (br_if $rowDone (i32.ge_u (local.get $x) (local.get $ow)))
        (local.set $src
          (i32.add (local.get $pair) (i32.shl (i32.load (i32.add (local.get $first) (i32.shl (local.get $x) (i32.const 2)))) (i32.const 4))))
        (local.set $acc (v128.const f64x2 0 0))
        (local.set $k (i32.const 0))
        (block $tapsDone
          (loop $tap
            (br_if $tapsDone (i32.ge_u (local.get $k) (local.get $taps)))
            (local.set $acc
              (f64x2.add (local.get $acc) (f64x2.mul (v128.load (local.get $src)) (v128.load64_splat (local.get $wt)))))
            (local.set $src (i32.add (local.get $src) (i32.const 16)))
            (local.set $wt (i32.add (local.get $wt) (i32.const 8)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $tap)))
        (f32.store (i32.add (local.get $outA) (i32.shl (local.get $x) (i32.const 2)))
          (f32.demote_f64 (f64x2.extract_lane 0 (local.get $acc))))
        (f32.store (i32.add (local.get $outB) (i32.shl (local.get $x) (i32.const 2)))
          (f32.demote_f64 (f64x2.extract_lane 1 (local.get $acc))))
        (local.set $x (i32.add (local.get $x) (i32.const 1)))
        (br $out))))

  ;; Vertical pass: output row y, column x is the sum over k < taps of tmp[(first[y] + k) * ow + x] *
  ;; weights[y * taps + k], two columns at a time; written as float32 (plain), or as
  ;; (float32(sum) - mean) / std. Reads and writes one float32 past a row when ow is odd (the caller
  ;; leaves room; the extra output is overwritten by the next row's first, or lands in the slack).
  (func (export "vertical") (param $tmp i32) (param $ow i32) (param $oh i32) (param $first i32)
    (param $weights i32) (param $taps i32) (param $out i32) (param $mean f64) (param $std f64) (param $plain i32)
    (local $y i32) (local $x i32) (local $k i32) (local $row0 i32) (local $src i32) (local $wt i32)
    (local $stride i32) (local $acc v128) (local $m v128) (local $s v128)
    (local.set $stride (i32.shl (local.get $ow) (i32.const 2)))
    (local.set $m (f64x2.splat (local.get $mean)))
    (local.set $s (f64x2.splat (local.get $std)))
    (block $allDone
      (loop $rows
        (br_if $allDone (i32.ge_u (local.get $y) (local.get $oh)))
        (local.set $row0
          (i32.add (local.get $tmp)
            (i32.mul (i32.load (i32.add (local.get $first) (i32.shl (local.get $y) (i32.const 2)))) (local.get $stride))))
        (local.set $x (i32.const 0))
        (block $rowDone
          (loop $cols
            (br_if $rowDone (i32.ge_u (local.get $x) (local.get $ow)))
            (local.set $src (i32.add (local.get $row0) (i32.shl (local.get $x) (i32.const 2))))
            (local.set $wt (i32.add (local.get $weights) (i32.shl (i32.mul (local.get $y) (local.get $taps)) (i32.const 3))))
            (local.set $acc (v128.const f64x2 0 0))
            (local.set $k (i32.const 0))
            (block $tapsDone
              (loop $tap
                (br_if $tapsDone (i32.ge_u (local.get $k) (local.get $taps)))
                (local.set $acc
                  (f64x2.add (local.get $acc)
                    (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $src)))
                      (v128.load64_splat (local.get $wt)))))
                (local.set $src (i32.add (local.get $src) (local.get $stride)))
                (local.set $wt (i32.add (local.get $wt) (i32.const 8)))
                (local.set $k (i32.add (local.get $k) (i32.const 1)))
                (br $tap)))
            (if (i32.eqz (local.get $plain))
              (then
                (local.set $acc
                  (f64x2.div
                    (f64x2.sub (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (local.get $acc))) (local.get $m))
                    (local.get $s)))))
            (v128.store64_lane 0
              (i32.add (local.get $out) (i32.shl (local.get $x) (i32.const 2)))
              (f32x4.demote_f64x2_zero (local.get $acc)))
            (local.set $x (i32.add (local.get $x) (i32.const 2)))
            (br $cols)))
        (local.set $out (i32.add (local.get $out) (local.get $stride)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $rows)))))
