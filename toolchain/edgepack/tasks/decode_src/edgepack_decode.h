/* edgepack detection decoding: anchor-free box/class maps and FOMO-style centroid heatmaps, read
 * straight from a model's int8 outputs, with per-class non-maximum suppression. No heap; the
 * caller owns every buffer. The rules are those of decode.py (the Python reference shipped beside
 * this file): see its docstring for the conventions. */
#ifndef EDGEPACK_DECODE_H
#define EDGEPACK_DECODE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float x1, y1, x2, y2; /* input pixels */
    float score;          /* sigmoid of the class logit */
    int cls;
} ep_box;

typedef struct {
    float x, y;  /* input pixels */
    float score; /* the component's highest cell probability */
    int cls;
} ep_point;

/* One feature level of an anchor-free head: its box map [4, h, w] and class map [classes, h, w],
 * int8, flattened channels-first (edgepack's several-output models deploy them so), with their
 * quantization. */
typedef struct {
    const int8_t *box;
    float box_scale;
    int box_zero_point;
    const int8_t *cls;
    float cls_scale;
    int cls_zero_point;
    int h, w;
    float stride; /* input height / h */
} ep_level;

/* Detections of one image, best first: every cell's best class kept when its score is at least
 * conf (the max_candidates best of those, held in candidates[]), then NMS within each class at iou.
 * Writes at most max_out to out[]; returns how many. */
int ep_decode_boxes(const ep_level *levels, int n_levels, int classes, float conf, float iou,
                    ep_box *candidates, int max_candidates, ep_box *out, int max_out);

/* Bytes of scratch ep_decode_centroids needs for an h x w heatmap. */
#define EP_CENTROID_SCRATCH(h, w) ((h) * (w) * 3 + 2)

/* Object centres of one image from a heatmap of classes + 1 logits per cell (channel 0 the
 * background), int8 with its quantization; channels_last: 1 for [h, w, C] (a one-output TFLite
 * model), 0 for [C, h, w]. Cells whose most likely channel is a class with probability >= threshold
 * form 4-connected components, each one centre (probability-weighted). Returns how many. */
int ep_decode_centroids(const int8_t *heat, float scale, int zero_point, int channels, int h, int w,
                        int channels_last, float stride, float threshold, void *scratch,
                        ep_point *out, int max_out);

#ifdef __cplusplus
}
#endif

#endif
