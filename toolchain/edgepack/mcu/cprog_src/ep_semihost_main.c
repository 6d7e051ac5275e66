/* edgepack C program, firmware harness: runs the model on the samples compiled in beside it
 * (ep_samples.c) and writes, through semihosting, one line per sample per output ("O k <hex>"),
 * the SysTick ticks of each inference ("T k <ticks>") and the ticks of a calibration loop of
 * 2 x EP_CALIBRATION instructions ("C <ticks>"), then exits with 0. Built with EP_PROFILE (and
 * EP_MARK(op) calling ep_mark), it also writes the ticks of each operator of the first sample
 * ("M <op> <ticks>"). */
#include <stdint.h>
#include <string.h>

#include EP_MODEL_HEADER
#include "ep_board.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(EP_PREFIX, name)
#define EP_CALIBRATION 1000000u

extern const int32_t ep_sample_count;
extern const uint8_t ep_samples[];

static char line[1024];

#ifdef EP_PROFILE
#define EP_MAX_MARKS 1024
static int32_t mark_op[EP_MAX_MARKS];
static uint64_t mark_ticks[EP_MAX_MARKS];
static int32_t marks = -1; /* -1: not recording */

void ep_mark(int op) {
    if (marks < 0 || marks >= EP_MAX_MARKS) return;
    mark_ticks[marks] = ep_ticks();
    mark_op[marks++] = op;
}
#endif

static char *put_u64(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static void emit_hex(int sample, int output, const uint8_t *bytes, int32_t count) {
    static const char digits[] = "0123456789abcdef";
    int32_t at = 0;
    while (at < count) {
        char *p = line;
        *p++ = 'O';
        *p++ = ' ';
        p = put_u64(p, (uint64_t)sample);
        *p++ = ' ';
        p = put_u64(p, (uint64_t)output);
        *p++ = ' ';
        for (int32_t k = 0; k < 480 && at < count; ++k, ++at) {
            *p++ = digits[bytes[at] >> 4];
            *p++ = digits[bytes[at] & 15];
        }
        *p++ = '\n';
        *p = 0;
        ep_write(line);
    }
}

int main(void) {
    ep_ticks_start();
    uint64_t t0 = ep_ticks();
    ep_calibration_loop(EP_CALIBRATION);
    uint64_t t1 = ep_ticks();
    char *p = line;
    *p++ = 'C';
    *p++ = ' ';
    p = put_u64(p, t1 - t0);
    *p++ = '\n';
    *p = 0;
    ep_write(line);
    int32_t in_bytes = 0;
    for (int i = 0; i < FN(_inputs)(); ++i) in_bytes += FN(_input_bytes)(i);
    for (int32_t s = 0; s < ep_sample_count; ++s) {
        const uint8_t *src = ep_samples + (size_t)s * in_bytes;
        for (int i = 0; i < FN(_inputs)(); ++i) {
            memcpy(FN(_input)(i), src, (size_t)FN(_input_bytes)(i));
            src += FN(_input_bytes)(i);
        }
#ifdef EP_PROFILE
        marks = s == 0 ? 0 : -1;
#endif
        uint64_t a = ep_ticks();
        FN(_invoke)();
        uint64_t b = ep_ticks();
#ifdef EP_PROFILE
        for (int32_t k = 0; s == 0 && k < marks; ++k) {
            p = line;
            *p++ = 'M';
            *p++ = ' ';
            p = put_u64(p, (uint64_t)mark_op[k]);
            *p++ = ' ';
            p = put_u64(p, mark_ticks[k] - (k ? mark_ticks[k - 1] : a));
            *p++ = '\n';
            *p = 0;
            ep_write(line);
        }
#endif
        for (int o = 0; o < FN(_outputs)(); ++o) emit_hex((int)s, o, (const uint8_t *)FN(_output)(o), FN(_output_bytes)(o));
        p = line;
        *p++ = 'T';
        *p++ = ' ';
        p = put_u64(p, (uint64_t)s);
        *p++ = ' ';
        p = put_u64(p, b - a);
        *p++ = '\n';
        *p = 0;
        ep_write(line);
    }
    return 0;
}
