/**
 * GELU (exact, erf form: x·Φ(x), as torch's nn.GELU()) and its derivative as WGSL helpers, shared by the
 * elementwise kernels (ops.ts) and the matmul epilogues that fuse them (matmul.ts), so a fused and an unfused
 * step compute the very same expression.
 */

/** erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), for f32 or vec4<f32> arguments. */
function erf(name: string, t: string): string {
  return `
fn ${name}(x: ${t}) -> ${t} {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= ${t === 'f32' ? '0.0' : `${t}(0.0)`});
}`;
}

/** `erf_(x: f32)`. */
export const ERF = erf('erf_', 'f32');

/**
 * `gelu_(v)`, `gelu4(v)`: GELU of a value; `gelu_grad(x, dy)`, `gelu_grad4(x, dy)`: dy · GELU'(x). The same
 * expressions as ops.gelu / ops.geluBackward.
 */
export const GELU_HELPERS = `${ERF}${erf('erf4', 'vec4<f32>')}
fn gelu_(v: f32) -> f32 { return 0.5 * v * (1.0 + erf_(v * 0.70710678118654752)); }
fn gelu4(v: vec4<f32>) -> vec4<f32> { return 0.5 * v * (1.0 + erf4(v * 0.70710678118654752)); }
fn gelu_grad(v: f32, dy: f32) -> f32 {
  let cdf = 0.5 * (1.0 + erf_(v * 0.70710678118654752));
  let pdf = 0.39894228040143268 * exp(-0.5 * v * v);
  return dy * (cdf + v * pdf);
}
fn gelu_grad4(v: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
  let cdf = 0.5 * (1.0 + erf4(v * 0.70710678118654752));
  let pdf = 0.39894228040143268 * exp(-0.5 * v * v);
  return dy * (cdf + v * pdf);
}
`;
