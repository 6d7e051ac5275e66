/* edgepack detection decoding (see edgepack_decode.h and decode.py). */
#include "edgepack_decode.h"

#include <math.h>
#include <stdlib.h>

static float deq(int8_t q, float scale, int zp) { return scale * (float)((int)q - zp); }

static float sigmoidf_(float v) {
    if (v < -60.f) v = -60.f;
    if (v > 60.f) v = 60.f;
    return 1.f / (1.f + expf(-v));
}

static float iou_of(const ep_box *a, const ep_box *b) {
    float l = a->x1 > b->x1 ? a->x1 : b->x1, t = a->y1 > b->y1 ? a->y1 : b->y1;
    float r = a->x2 < b->x2 ? a->x2 : b->x2, d = a->y2 < b->y2 ? a->y2 : b->y2;
    float iw = r - l > 0.f ? r - l : 0.f, ih = d - t > 0.f ? d - t : 0.f, inter = iw * ih;
    float aw = a->x2 - a->x1, ah = a->y2 - a->y1, bw = b->x2 - b->x1, bh = b->y2 - b->y1;
    float area_a = (aw > 0.f ? aw : 0.f) * (ah > 0.f ? ah : 0.f);
    float area_b = (bw > 0.f ? bw : 0.f) * (bh > 0.f ? bh : 0.f);
    float u = area_a + area_b - inter;
    return u > 0.f ? inter / u : 0.f;
}

/* whether a goes after b in the candidates' order (highest score first; equal scores keep their order) */
static int score_below(const ep_box *a, const ep_box *b) { return a->score < b->score; }

int ep_decode_boxes(const ep_level *levels, int n_levels, int classes, float conf, float iou,
                    ep_box *cand, int max_candidates, ep_box *out, int max_out) {
    int n = 0, worst = -1;
    for (int l = 0; l < n_levels; ++l) {
        const ep_level *lv = &levels[l];
        int cells = lv->h * lv->w;
        for (int k = 0; k < cells; ++k) {
            int best = 0;
            for (int c = 1; c < classes; ++c)
                if (lv->cls[c * cells + k] > lv->cls[best * cells + k]) best = c;
            float s = sigmoidf_(deq(lv->cls[best * cells + k], lv->cls_scale, lv->cls_zero_point));
            if (s < conf) continue;
            float px = ((k % lv->w) + 0.5f) * lv->stride, py = ((k / lv->w) + 0.5f) * lv->stride;
            float d[4];
            for (int j = 0; j < 4; ++j) {
                float v = deq(lv->box[j * cells + k], lv->box_scale, lv->box_zero_point);
                d[j] = (v > 0.f ? v : 0.f) * lv->stride;
            }
            ep_box b = {px - d[0], py - d[1], px + d[2], py + d[3], s, best};
            if (n < max_candidates) {
                cand[n++] = b;
            } else { /* full: replace the lowest score when this one is higher */
                if (worst < 0) {
                    worst = 0;
                    for (int i = 1; i < n; ++i) if (cand[i].score < cand[worst].score) worst = i;
                }
                if (s > cand[worst].score) {
                    cand[worst] = b;
                    worst = -1;
                }
            }
        }
    }
    /* a stable order: insertion sort by score (qsort is not stable); n is small */
    for (int i = 1; i < n; ++i) {
        ep_box b = cand[i];
        int j = i - 1;
        while (j >= 0 && score_below(&cand[j], &b)) {
            cand[j + 1] = cand[j];
            --j;
        }
        cand[j + 1] = b;
    }
    int kept = 0;
    for (int i = 0; i < n && kept < max_out; ++i) {
        if (cand[i].score < 0.f) continue; /* suppressed */
        out[kept++] = cand[i];
        for (int j = i + 1; j < n; ++j)
            if (cand[j].score >= 0.f && cand[j].cls == cand[i].cls && iou_of(&cand[i], &cand[j]) > iou)
                cand[j].score = -1.f;
    }
    return kept;
}

int ep_decode_centroids(const int8_t *heat, float scale, int zp, int channels, int h, int w,
                        int channels_last, float stride, float threshold, void *scratch,
                        ep_point *out, int max_out) {
    uint8_t *label = (uint8_t *)scratch; /* per cell: 0 off, class + 1 on, 255 seen */
    uint16_t *stack = (uint16_t *)((uint8_t *)scratch + ((h * w + 1) & ~1));
    int cells = h * w;
#define AT(c, k) (channels_last ? heat[(k) * channels + (c)] : heat[(c) * cells + (k)])
    /* each cell's most likely channel and its softmax probability */
    for (int k = 0; k < cells; ++k) {
        int best = 0;
        for (int c = 1; c < channels; ++c) if (AT(c, k) > AT(best, k)) best = c;
        float top = deq(AT(best, k), scale, zp), sum = 0.f;
        for (int c = 0; c < channels; ++c) sum += expf(deq(AT(c, k), scale, zp) - top);
        float p = 1.f / sum;
        label[k] = (best > 0 && p >= threshold) ? (uint8_t)best : 0;
    }
    int found = 0;
    for (int k0 = 0; k0 < cells && found < max_out; ++k0) {
        if (label[k0] == 0 || label[k0] == 255) continue;
        int cls = label[k0], top = 0;
        float sx = 0.f, sy = 0.f, sw = 0.f, smax = 0.f;
        stack[top++] = (uint16_t)k0;
        label[k0] = 255;
        while (top > 0) {
            int k = stack[--top], r = k / w, c = k % w;
            float best = deq(AT(cls, k), scale, zp), sum = 0.f;
            for (int ch = 0; ch < channels; ++ch) sum += expf(deq(AT(ch, k), scale, zp) - best);
            float p = 1.f / sum;
            sx += (c + 0.5f) * p;
            sy += (r + 0.5f) * p;
            sw += p;
            if (p > smax) smax = p;
            int nb[4] = {k + w, k - w, k + 1, k - 1};
            int ok[4] = {r + 1 < h, r > 0, c + 1 < w, c > 0};
            for (int j = 0; j < 4; ++j)
                if (ok[j] && label[nb[j]] == cls) {
                    label[nb[j]] = 255;
                    stack[top++] = (uint16_t)nb[j];
                }
        }
        /* cells of this class not yet visited keep their label; visited ones are 255 */
        out[found].x = sx / sw * stride;
        out[found].y = sy / sw * stride;
        out[found].score = smax;
        out[found].cls = cls - 1;
        ++found;
    }
#undef AT
    return found;
}
