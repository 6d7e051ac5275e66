/* edgepack C program: int8 kernels (NHWC, TFLM's reference arithmetic). The generated model.c
 * calls them in a straight line with constants precomputed by edgepack (mcu/program_params.py). */
#ifndef EP_KERNELS_H
#define EP_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t n, h, w, c;
} ep_dims;

typedef struct {
    int16_t stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, k_h, k_w;
} ep_window;

typedef struct {
    int32_t in_offset, out_offset, act_min, act_max;
} ep_affine;

/* convolution; filter [out_c][k_h][k_w][filter_in], filter_in = in_c / groups; per-channel
 * multipliers and shifts */
void ep_conv(const int8_t *in, ep_dims id, const int8_t *filter, int32_t filter_in, const int32_t *bias, int8_t *out,
             ep_dims od, ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift);
/* depthwise convolution; filter [1][k_h][k_w][out_c], out_c = in_c x depth multiplier */
void ep_dwconv(const int8_t *in, ep_dims id, const int8_t *filter, const int32_t *bias, int8_t *out, ep_dims od,
               ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift);
/* the same with stride 1 and depth multiplier 1, writing over its input one channel at a time
 * (scratch: one channel's plane, h x w bytes) */
void ep_dwconv_inplace(int8_t *io, ep_dims d, const int8_t *filter, const int32_t *bias, ep_window win, ep_affine q,
                       const int32_t *mult, const int8_t *shift, int8_t *scratch);
/* fully connected; filter [units][depth]; mult/shift per unit (the same value repeated when per-tensor) */
void ep_fc(const int8_t *in, int32_t batches, int32_t depth, const int8_t *filter, int32_t filter_offset,
           const int32_t *bias, int8_t *out, int32_t units, ep_affine q, const int32_t *mult, const int8_t *shift);
void ep_avgpool(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, ep_window win, int32_t act_min, int32_t act_max);
void ep_maxpool(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, ep_window win, int32_t act_min, int32_t act_max);

/* elementwise with broadcasting over up to 5 dimensions: strides of each input per output index
 * (0 where broadcast) */
typedef struct {
    int32_t dims[5], s1[5], s2[5];
} ep_bcast;

typedef struct {
    int32_t in1_offset, in2_offset, out_offset, left_shift;
    int32_t m1, m2, m_out;
    int8_t s1, s2, s_out;
    int32_t act_min, act_max;
} ep_add_params;

/* a convolution whose result goes straight into an ADD with `other` (same shape, no broadcast),
 * written to `out` (which may be `other`): the convolution's int8 output is never stored */
void ep_conv_add(const int8_t *in, ep_dims id, const int8_t *filter, int32_t filter_in, const int32_t *bias,
                 int8_t *out, ep_dims od, ep_window win, ep_affine q, const int32_t *mult, const int8_t *shift,
                 const int8_t *other, const ep_add_params *ap, int conv_first);
void ep_add(const int8_t *a, const int8_t *b, int8_t *out, const ep_bcast *bc, const ep_add_params *p);
void ep_mul(const int8_t *a, const int8_t *b, int8_t *out, const ep_bcast *bc, int32_t in1_offset,
            int32_t in2_offset, int32_t out_offset, int32_t mult, int shift, int32_t act_min, int32_t act_max);

/* mean over the spatial axes (1, 2) of NHWC, keeping or dropping them */
void ep_mean_hw(const int8_t *in, ep_dims id, int8_t *out, int32_t in_zp, int32_t out_zp, int32_t mult, int shift);
void ep_softmax(const int8_t *in, int32_t rows, int32_t depth, int8_t *out, int32_t in_mult, int in_left_shift,
                int32_t diff_min);
void ep_logistic(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t radius, int32_t in_mult,
                 int in_left_shift);
void ep_hardswish(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t out_zp, int16_t out_mult,
                  int out_exp, int16_t relu_mult, int relu_exp);
/* (x - in_zp) x scale ratio + out_zp, clamped to [lo, hi] (QUANTIZE int8 -> int8, RELU, RELU_N1_TO_1) */
void ep_requantize(const int8_t *in, int32_t size, int8_t *out, int32_t in_zp, int32_t out_zp, int32_t mult, int shift,
                   int32_t lo, int32_t hi);
/* x clamped to [lo, hi] without rescaling (TFLM's RELU6) */
void ep_clamp(const int8_t *in, int32_t size, int8_t *out, int8_t lo, int8_t hi);
void ep_quantize_f32(const float *in, int32_t size, int8_t *out, float scale, int32_t zp);
void ep_dequantize(const int8_t *in, int32_t size, float *out, double scale, int32_t zp);
/* pad a 4-D NHWC tensor with `value` (before/after per axis) */
void ep_pad(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, const int32_t before[4], int8_t value);
/* RESIZE_BILINEAR as TFLM's integer reference: positions in 1/1024ths of an input pixel (scale_h,
 * scale_w: input pixels per output pixel x 1024), the result rounded half away from zero */
void ep_resize_bilinear(const int8_t *in, ep_dims id, int8_t *out, ep_dims od, int32_t scale_h, int32_t scale_w,
                        int half_pixel_centers);
/* concatenate along `axis` of 4-D tensors with the same quantization: outer x (each input's inner block);
 * `out` may be the first input's own bytes (written from the last block back) */
void ep_concat(const int8_t *const *ins, const int32_t *inner, int32_t count, int32_t outer, int8_t *out);

#endif
