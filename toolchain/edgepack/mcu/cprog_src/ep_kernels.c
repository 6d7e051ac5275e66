/* edgepack C program: int8 kernels with TensorFlow Lite Micro's reference arithmetic (see
 * ep_fixed.h). No allocation, no globals: every buffer is the caller's. */
#include "ep_kernels.h"

#include <math.h>
#include <string.h>

#include "ep_fixed.h"

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi) { return (int8_t)EP_MIN(EP_MAX(v, lo), hi); }

static inline int8_t add_one(int32_t x1, int32_t x2, const ep_add_params *p) {
    x1 = (x1 + p->in1_offset) * (1 << p->left_shift);
    x2 = (x2 + p->in2_offset) * (1 << p->left_shift);
    const int32_t sum = ep_mbqm(x1, p->m1, p->s1) + ep_mbqm(x2, p->m2, p->s2);
    return clamp8(ep_mbqm(sum, p->m_out, p->s_out) + p->out_offset, p->act_min, p->act_max);
}

/* the convolution; with `other`, each int8 result is then added to other's element at the same
 * place (ADD's arithmetic; `conv_first`: the convolution is ADD's first input) */
static void conv(const int8_t *in, ep_dims id, const int8_t *filter, int32_t filter_in, const int32_t *bias, int8_t *out,
                 ep_dims od, ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift, const int8_t *other,
                 const ep_add_params *ap, int conv_first) {
    const int32_t per_group_out = od.c / (id.c / filter_in);
    for (int32_t b = 0; b < od.n; ++b) {
        for (int32_t oy = 0; oy < od.h; ++oy) {
            const int32_t y0 = oy * win.stride_h - win.pad_t;
            for (int32_t ox = 0; ox < od.w; ++ox) {
                const int32_t x0 = ox * win.stride_w - win.pad_l;
                for (int32_t oc = 0; oc < od.c; ++oc) {
                    const int32_t c0 = (oc / per_group_out) * filter_in;
                    int32_t acc = 0;
                    for (int32_t fy = 0; fy < win.k_h; ++fy) {
                        const int32_t iy = y0 + win.dil_h * fy;
                        if (iy < 0 || iy >= id.h) continue;
                        for (int32_t fx = 0; fx < win.k_w; ++fx) {
                            const int32_t ix = x0 + win.dil_w * fx;
                            if (ix < 0 || ix >= id.w) continue;
                            const int8_t *px = in + ((b * id.h + iy) * id.w + ix) * id.c + c0;
                            const int8_t *f = filter + ((oc * win.k_h + fy) * win.k_w + fx) * filter_in;
                            for (int32_t ic = 0; ic < filter_in; ++ic) acc += (int32_t)f[ic] * ((int32_t)px[ic] + q.in_offset);
                        }
                    }
                    if (bias) acc += bias[oc];
                    acc = ep_mbqm(acc, mult[oc], shift[oc]) + q.out_offset;
                    const int32_t at = ((b * od.h + oy) * od.w + ox) * od.c + oc;
                    const int8_t v = clamp8(acc, q.act_min, q.act_max);
                    out[at] = other == 0 ? v : conv_first ? add_one(v, other[at], ap) : add_one(other[at], v, ap);
                }
            }
        }
    }
}

void ep_conv(const int8_t *in, ep_dims id, const int8_t *filter, int32_t filter_in, const int32_t *bias, int8_t *out,
             ep_dims od, ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift) {
    conv(in, id, filter, filter_in, bias, out, od, win, q, mult, shift, 0, 0, 0);
}

void ep_conv_add(const int8_t *in, ep_dims id, const int8_t *filter, int32_t filter_in, const int32_t *bias,
                 int8_t *out, ep_dims od, ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift,
                 const int8_t *other, const ep_add_params *ap, int conv_first) {
    conv(in, id, filter, filter_in, bias, out, od, win, q, mult, shift, other, ap, conv_first);
}

/* one depthwise window of one channel: `img` at the channel's value of pixel (0, 0), pixels `pstride`
 * apart, rows of `w` pixels; `f` at the output channel's tap (0, 0), taps `fstride` apart */
static inline int32_t dw_window(const int8_t *img, int32_t h, int32_t w, int32_t pstride, const int8_t *f,
                                int32_t fstride, int32_t y0, int32_t x0, const ep_window *win, int32_t in_offset) {
    int32_t acc = 0;
    for (int32_t fy = 0; fy < win->k_h; ++fy) {
        const int32_t iy = y0 + win->dil_h * fy;
        if (iy < 0 || iy >= h) continue;
        for (int32_t fx = 0; fx < win->k_w; ++fx) {
            const int32_t ix = x0 + win->dil_w * fx;
            if (ix < 0 || ix >= w) continue;
            acc += (int32_t)f[(fy * win->k_w + fx) * fstride] * ((int32_t)img[(iy * w + ix) * pstride] + in_offset);
        }
    }
    return acc;
}

/* an accumulator with its bias, requantized for output channel `oc` and clamped */
static inline int8_t dw_result(int32_t acc, const int32_t *bias, int32_t oc, const int32_t *mult, const int8_t *shift,
                               const ep_affine *q) {
    if (bias) acc += bias[oc];
    return clamp8(ep_mbqm(acc, mult[oc], shift[oc]) + q->out_offset, q->act_min, q->act_max);
}

void ep_dwconv(const int8_t *in, ep_dims id, const int8_t *filter, const int32_t *bias, int8_t *out, ep_dims od,
               ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift) {
    const int32_t depth_mult = od.c / id.c;
    for (int32_t b = 0; b < od.n; ++b) {
        const int8_t *img = in + b * id.h * id.w * id.c;
        for (int32_t oy = 0; oy < od.h; ++oy) {
            const int32_t y0 = oy * win.stride_h - win.pad_t;
            for (int32_t ox = 0; ox < od.w; ++ox) {
                const int32_t x0 = ox * win.stride_w - win.pad_l;
                int8_t *px = out + ((b * od.h + oy) * od.w + ox) * od.c;
                for (int32_t ic = 0; ic < id.c; ++ic) {
                    for (int32_t m = 0; m < depth_mult; ++m) {
                        const int32_t oc = m + ic * depth_mult;
                        const int32_t acc = dw_window(img + ic, id.h, id.w, id.c, filter + oc, od.c, y0, x0, &win, q.in_offset);
                        px[oc] = dw_result(acc, bias, oc, mult, shift, &q);
                    }
                }
            }
        }
    }
}

void ep_dwconv_inplace(int8_t *io, ep_dims d, const int8_t *filter, const int32_t *bias, ep_window win, ep_affine q,
                       const int32_t *mult, const int8_t *shift, int8_t *scratch) {
    for (int32_t b = 0; b < d.n; ++b) {
        int8_t *img = io + b * d.h * d.w * d.c;
        for (int32_t c = 0; c < d.c; ++c) {
            for (int32_t oy = 0; oy < d.h; ++oy) {
                for (int32_t ox = 0; ox < d.w; ++ox) {
                    const int32_t acc = dw_window(img + c, d.h, d.w, d.c, filter + c, d.c, oy - win.pad_t, ox - win.pad_l,
                                                  &win, q.in_offset);
                    scratch[oy * d.w + ox] = dw_result(acc, bias, c, mult, shift, &q);
                }
            }
            for (int32_t p = 0; p < d.h * d.w; ++p) img[p * d.c + c] = scratch[p];
        }
    }
}

void ep_fc(const int8_t *in, int32_t batches, int32_t depth, const int8_t *filter, int32_t filter_offset,
           const int32_t *bias, int8_t *out, int32_t units, ep_affine q, const int32_t *mult, const int8_t *shift) {
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *x = in + b * depth;
        for (int32_t u = 0; u < units; ++u) {
            const int8_t *f = filter + u * depth;
            int32_t acc = 0;
            for (int32_t d = 0; d < depth; ++d) acc += ((int32_t)f[d] + filter_offset) * ((int32_t)x[d] + q.in_offset);
            if (bias) acc += bias[u];
            acc = ep_mbqm(acc, mult[u], shift[u]) + q.out_offset;
            out[b * units + u] = clamp8(acc, q.act_min, q.act_max);
        }
    }
}

static void pool(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, ep_window win, int32_t act_min,
                 int32_t act_max, int is_max) {
    for (int32_t b = 0; b < od.n; ++b) {
        for (int32_t oy = 0; oy < od.h; ++oy) {
            const int32_t y0 = oy * win.stride_h - win.pad_t;
            const int32_t fy0 = EP_MAX(0, -y0), fy1 = EP_MIN(win.k_h, id.h - y0);
            for (int32_t ox = 0; ox < od.w; ++ox) {
                const int32_t x0 = ox * win.stride_w - win.pad_l;
                const int32_t fx0 = EP_MAX(0, -x0), fx1 = EP_MIN(win.k_w, id.w - x0);
                for (int32_t c = 0; c < od.c; ++c) {
                    int32_t acc = is_max ? -128 : 0, count = 0;
                    for (int32_t fy = fy0; fy < fy1; ++fy) {
                        for (int32_t fx = fx0; fx < fx1; ++fx) {
                            int32_t v = in[((b * id.h + y0 + fy) * id.w + x0 + fx) * id.c + c];
                            if (is_max) acc = EP_MAX(acc, v);
                            else acc += v;
                            ++count;
                        }
                    }
                    if (!is_max && count > 0) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    out[((b * od.h + oy) * od.w + ox) * od.c + c] = clamp8(acc, act_min, act_max);
                }
            }
        }
    }
}

void ep_avgpool(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, ep_window win, int32_t act_min, int32_t act_max) {
    pool(in, id, out, od, win, act_min, act_max, 0);
}

void ep_maxpool(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, ep_window win, int32_t act_min, int32_t act_max) {
    pool(in, id, out, od, win, act_min, act_max, 1);
}

/* calls fn(i, j, k) for every output index, with each input's flat index */
#define EP_BROADCAST(bc, BODY)                                                                          \
    do {                                                                                                \
        int32_t k = 0;                                                                                  \
        for (int32_t d0 = 0; d0 < (bc)->dims[0]; ++d0)                                                  \
            for (int32_t d1 = 0; d1 < (bc)->dims[1]; ++d1)                                              \
                for (int32_t d2 = 0; d2 < (bc)->dims[2]; ++d2)                                          \
                    for (int32_t d3 = 0; d3 < (bc)->dims[3]; ++d3)                                      \
                        for (int32_t d4 = 0; d4 < (bc)->dims[4]; ++d4, ++k) {                           \
                            const int32_t i = d0 * (bc)->s1[0] + d1 * (bc)->s1[1] + d2 * (bc)->s1[2] +  \
                                              d3 * (bc)->s1[3] + d4 * (bc)->s1[4];                      \
                            const int32_t j = d0 * (bc)->s2[0] + d1 * (bc)->s2[1] + d2 * (bc)->s2[2] +  \
                                              d3 * (bc)->s2[3] + d4 * (bc)->s2[4];                      \
                            BODY;                                                                       \
                        }                                                                               \
    } while (0)

void ep_add(const int8_t *a, const int8_t *b, int8_t *out, const ep_bcast *bc, const ep_add_params *p) {
    EP_BROADCAST(bc, { out[k] = add_one(a[i], b[j], p); });
}

void ep_mul(const int8_t *a, const int8_t *b, int8_t *out, const ep_bcast *bc, int32_t in1_offset,
            int32_t in2_offset, int32_t out_offset, int32_t mult, int shift, int32_t act_min, int32_t act_max) {
    EP_BROADCAST(bc, {
        const int32_t prod = ((int32_t)a[i] + in1_offset) * ((int32_t)b[j] + in2_offset);
        out[k] = clamp8(ep_mbqm(prod, mult, shift) + out_offset, act_min, act_max);
    });
}

void ep_mean_hw(const int8_t *in, ep_dims id, int8_t *out, int32_t in_zp, int32_t out_zp, int32_t mult, int shift) {
    for (int32_t b = 0; b < id.n; ++b) {
        for (int32_t c = 0; c < id.c; ++c) {
            int32_t acc = 0;
            for (int32_t y = 0; y < id.h; ++y)
                for (int32_t x = 0; x < id.w; ++x) acc += (int32_t)in[((b * id.h + y) * id.w + x) * id.c + c] - in_zp;
            out[b * id.c + c] = clamp8(ep_mbqm(acc, mult, shift) + out_zp, -128, 127);
        }
    }
}

void ep_softmax(const int8_t *in, int32_t rows, int32_t depth, int8_t *out, int32_t in_mult, int in_left_shift,
                int32_t diff_min) {
    for (int32_t r = 0; r < rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < depth; ++c) max_in_row = EP_MAX(max_in_row, x[c]);
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t scaled = ep_srdhm((int32_t)((uint32_t)diff << in_left_shift), in_mult); /* Q5.26 */
                sum_of_exps = ep_wrap_add(sum_of_exps, ep_rdbpot(ep_exp_neg(scaled, 5), 12));
            }
        }
        const int headroom_plus_one = ep_clz32((uint32_t)sum_of_exps);
        const int num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one = (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - (1u << 31));
        const int32_t shifted_scale = ep_one_over_one_plus_x(shifted_sum_minus_one);
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t scaled = ep_srdhm((int32_t)((uint32_t)diff << in_left_shift), in_mult);
                const int32_t e = ep_exp_neg(scaled, 5);
                const int32_t unsat = ep_rdbpot(ep_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
                y[c] = clamp8(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

static int32_t logistic_q0(int32_t a /* Q4.27 */) {
    if (a == 0) return 1 << 30;
    const int32_t abs_a = a > 0 ? a : ep_wrap_neg(a);
    const int32_t pos = ep_one_over_one_plus_x(ep_exp_neg(ep_wrap_neg(abs_a), 4));
    return a > 0 ? pos : ep_wrap_sub(INT32_MAX, pos);
}

void ep_logistic(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t radius, int32_t in_mult,
                 int in_left_shift) {
    for (int32_t i = 0; i < size; ++i) {
        const int32_t x = (int32_t)in[i] - in_zp;
        if (x <= -radius) {
            out[i] = -128;
        } else if (x >= radius) {
            out[i] = 127;
        } else {
            const int32_t q4 = ep_mbqm(x, in_mult, in_left_shift);
            const int32_t q23 = ep_rdbpot(logistic_q0(q4), 31 - 8);
            out[i] = clamp8(q23 - 128, -128, 127);
        }
    }
}

void ep_hardswish(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t out_zp, int16_t out_mult,
                  int out_exp, int16_t relu_mult, int relu_exp) {
    for (int32_t i = 0; i < size; ++i) {
        const int16_t v = (int16_t)((int32_t)in[i] - in_zp);
        const int16_t hires = (int16_t)(v * (1 << 7));
        const int16_t preshift_out = ep_srdhm16(hires, out_mult);
        int16_t relu = hires;
        if (relu_exp > 0) relu = ep_sat_shl16(relu, relu_exp - 1);
        relu = ep_srdhm16(relu, relu_mult);
        if (relu_exp > 0) relu = ep_sat_shl16(relu, 1);
        if (relu_exp < 0) relu = ep_rdbpot16(relu, -relu_exp);
        relu = (int16_t)(((int32_t)relu + (1 << 15)) >> 1);
        const int16_t pre = ep_sdhm16(relu, preshift_out);
        int32_t o = (int32_t)ep_rdbpot16(pre, -out_exp) + out_zp;
        out[i] = clamp8(o, -128, 127);
    }
}

void ep_requantize(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t out_zp, int32_t mult, int shift,
                   int32_t lo, int32_t hi) {
    for (int32_t i = 0; i < size; ++i) out[i] = clamp8(ep_mbqm((int32_t)in[i] - in_zp, mult, shift) + out_zp, lo, hi);
}

void ep_clamp(const int8_t *in, int32_t size, int8_t *out, int8_t lo, int8_t hi) {
    for (int32_t i = 0; i < size; ++i) out[i] = in[i] > hi ? hi : in[i] < lo ? lo : in[i];
}

void ep_quantize_f32(const float *in, int32_t size, int8_t *out, float scale, int32_t zp) {
    for (int32_t i = 0; i < size; ++i) {
        out[i] = clamp8((int32_t)roundf(in[i] / scale) + zp, -128, 127);
    }
}

void ep_dequantize(const int8_t *in, int32_t size, float *out, double scale, int32_t zp) {
    for (int32_t i = 0; i < size; ++i) out[i] = (float)(scale * ((int32_t)in[i] - zp));
}

void ep_pad(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, const int32_t before[4], int8_t value) {
    memset(out, value, (size_t)od.n * od.h * od.w * od.c);
    for (int32_t b = 0; b < id.n; ++b)
        for (int32_t y = 0; y < id.h; ++y)
            for (int32_t x = 0; x < id.w; ++x)
                memcpy(out + (((b + before[0]) * od.h + y + before[1]) * od.w + x + before[2]) * od.c + before[3],
                       in + ((b * id.h + y) * id.w + x) * id.c, (size_t)id.c);
}

void ep_concat(const int8_t *const *ins, const int32_t *inner, int32_t count, int32_t outer, int8_t *out) {
    int32_t total = 0;
    for (int32_t k = 0; k < count; ++k) total += inner[k];
    /* the last block first: the output may start where the first input does (the plan puts it there
     * when that input dies here), and then only ever overwrites blocks of it already copied */
    for (int32_t o = outer - 1; o >= 0; --o) {
        int8_t *dst = out + o * total;
        for (int32_t k = 0; k < count; ++k) {
            memmove(dst, ins[k] + o * inner[k], (size_t)inner[k]);
            dst += inner[k];
        }
    }
}

/* an output coordinate's position in the input (x 1024) and the two input pixels around it */
static void resize_position(int32_t v, int32_t scale, int half_pixel, int32_t size, int32_t *pos, int32_t *lo,
                            int32_t *hi) {
    *pos = half_pixel ? v * scale + scale / 2 - (1 << 9) : v * scale;
    *lo = EP_MAX(*pos / (1 << 10), 0);
    *hi = EP_MIN((*pos + (1 << 10) - 1) / (1 << 10), size - 1);
}

void ep_resize_bilinear(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, int32_t scale_h, int32_t scale_w,
                        int half_pixel_centers) {
    for (int32_t b = 0; b < od.n; ++b) {
        const int8_t *img = in + b * id.h * id.w * id.c;
        for (int32_t y = 0; y < od.h; ++y) {
            int32_t py, y0, y1;
            resize_position(y, scale_h, half_pixel_centers, id.h, &py, &y0, &y1);
            const int64_t wy1 = py - (1 << 10) * y0, wy0 = (1 << 10) - wy1;
            for (int32_t x = 0; x < od.w; ++x) {
                int32_t px, x0, x1;
                resize_position(x, scale_w, half_pixel_centers, id.w, &px, &x0, &x1);
                const int64_t wx1 = px - (1 << 10) * x0, wx0 = (1 << 10) - wx1;
                const int8_t *p00 = img + (y0 * id.w + x0) * id.c, *p01 = img + (y0 * id.w + x1) * id.c;
                const int8_t *p10 = img + (y1 * id.w + x0) * id.c, *p11 = img + (y1 * id.w + x1) * id.c;
                int8_t *o = out + ((b * od.h + y) * od.w + x) * od.c;
                for (int32_t c = 0; c < od.c; ++c) {
                    const int64_t v = p00[c] * wy0 * wx0 + p10[c] * wy1 * wx0 + p01[c] * wy0 * wx1 + p11[c] * wy1 * wx1;
                    o[c] = (int8_t)((v + (v > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
                }
            }
        }
    }
}
