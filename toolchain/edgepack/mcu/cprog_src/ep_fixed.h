/* edgepack C program: the integer arithmetic TensorFlow Lite Micro's reference kernels use by
 * default (double rounding), so that a generated program's outputs are bit-exact with TFLM's.
 * Written for edgepack from the documented behaviour; every function is checked against TFLM's
 * interpreter by edgepack's tests. Signed right shifts are arithmetic (GCC and Clang on Arm and x86). */
#ifndef EP_FIXED_H
#define EP_FIXED_H

#include <stdint.h>

#define EP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EP_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline int32_t ep_wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t ep_wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static inline int32_t ep_wrap_neg(int32_t a) { return (int32_t)(0u - (uint32_t)a); }

/* round(a * b / 2^31), saturating the one overflow case (INT32_MIN * INT32_MIN) */
static inline int32_t ep_srdhm(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero */
static inline int32_t ep_rdbpot(int32_t x, int exponent) {
    if (exponent == 0) return x;
    int32_t mask = (int32_t)((1u << exponent) - 1u);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLM's MultiplyByQuantizedMultiplier: x * m * 2^shift, m a Q31 multiplier in [0.5, 1) */
static inline int32_t ep_mbqm(int32_t x, int32_t m, int shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return ep_rdbpot(ep_srdhm((int32_t)((uint32_t)x << left), m), right);
}

/* 2^exponent * x, saturating (gemmlowp's SaturatingRoundingMultiplyByPOT for exponent > 0) */
static inline int32_t ep_sat_shl(int32_t x, int exponent) {
    if (exponent <= 0) return ep_rdbpot(x, -exponent);
    const int32_t min = INT32_MIN, max = INT32_MAX;
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return max;
    if (x < -threshold) return min;
    return (int32_t)((uint32_t)x << exponent);
}

/* ---- int16 helpers (hard-swish) ---- */
static inline int16_t ep_srdhm16(int16_t a, int16_t b) {
    if (a == b && a == INT16_MIN) return INT16_MAX;
    int32_t ab = (int32_t)a * (int32_t)b;
    int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}
static inline int16_t ep_sdhm16(int16_t a, int16_t b) { /* without rounding */
    if (a == b && a == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}
static inline int16_t ep_sat_shl16(int16_t v, int amount) {
    int32_t r = (int32_t)v * (1 << amount);
    return (int16_t)EP_MIN(EP_MAX(r, INT16_MIN), INT16_MAX);
}
static inline int16_t ep_rdbpot16(int16_t x, int exponent) {
    if (exponent == 0) return x;
    int16_t mask = (int16_t)((1 << exponent) - 1);
    int16_t remainder = (int16_t)(x & mask);
    int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
    return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* ---- gemmlowp-style fixed point on int32 raws: Q(I).(31-I) ---- */
/* exp(a) for a in [-1/4, 0), Q0.31 in and out */
static inline int32_t ep_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;   /* exp(-1/8) */
    const int32_t one_third = 715827883;        /* 1/3 */
    int32_t x = ep_wrap_add(a, 1 << 28);        /* a + 1/8 */
    int32_t x2 = ep_srdhm(x, x), x3 = ep_srdhm(x2, x), x4 = ep_srdhm(x2, x2);
    int32_t x4_over_4 = ep_rdbpot(x4, 2);
    int32_t poly = ep_rdbpot(ep_wrap_add(ep_srdhm(ep_wrap_add(x4_over_4, x3), one_third), x2), 1);
    return ep_wrap_add(constant_term, ep_srdhm(constant_term, ep_wrap_add(x, poly)));
}

/* exp(a) for a <= 0 given in Q(int_bits).(31-int_bits); the result in Q0.31 */
static inline int32_t ep_exp_neg(int32_t a, int int_bits) {
    const int frac = 31 - int_bits;
    const int32_t quarter = (int32_t)1 << (frac - 2);
    int32_t mask = quarter - 1;
    int32_t a_mod_quarter_minus_quarter = ep_wrap_sub(a & mask, quarter);
    int32_t result = ep_exp_quarter(ep_sat_shl(a_mod_quarter_minus_quarter, int_bits)); /* Rescale<0> */
    int32_t remainder = ep_wrap_sub(a_mod_quarter_minus_quarter, a);
    static const int32_t mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    for (int e = -2; e <= 4; ++e) {
        if (int_bits > e) {
            int shift = frac + e;
            if (remainder & (int32_t)(1u << shift)) result = ep_srdhm(result, mult[e + 2]);
        }
    }
    if (int_bits > 5) {
        int32_t clamp = -((int32_t)1 << (36 - int_bits));  /* -32.0 */
        if (a < clamp) result = 0;
    }
    if (a == 0) result = INT32_MAX;  /* One() in Q0.31 */
    return result;
}

/* 1 / (1 + x) for x in [0, 1], Q0.31 in and out (Newton-Raphson, as gemmlowp) */
static inline int32_t ep_one_over_one_plus_x(int32_t a) {
    int64_t sum = (int64_t)a + INT32_MAX;
    int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t c48_17 = 1515870810, cneg32_17 = -1010580540;  /* Q2.29 */
    int32_t x = ep_wrap_add(c48_17, ep_srdhm(half_denominator, cneg32_17));
    for (int i = 0; i < 3; ++i) {
        int32_t hdx = ep_srdhm(half_denominator, x);                 /* Q2.29 */
        int32_t one_minus = ep_wrap_sub((int32_t)1 << 29, hdx);      /* Q2.29 */
        x = ep_wrap_add(x, ep_sat_shl(ep_srdhm(x, one_minus), 2));   /* Q4 -> Q2 */
    }
    return ep_sat_shl(x, 1);  /* ExactMulByPot<-1> (the same raw read as Q1.30), then Rescale<0> */
}

static inline int ep_clz32(uint32_t x) { return x ? __builtin_clz(x) : 32; }

#endif
