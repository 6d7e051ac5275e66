/* edgepack C program, host harness: reads samples (each: every input's bytes, in order) from
 * stdin, runs the model on each, writes every output's bytes to stdout. For checking a generated
 * program against TFLM on the build machine; ep_semihost_main.c does the same on Cortex-M. */
#include <stdio.h>

#include EP_MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(EP_PREFIX, name)

int main(void) {
    for (;;) {
        for (int i = 0; i < FN(_inputs)(); ++i) {
            size_t want = (size_t)FN(_input_bytes)(i), got = fread(FN(_input)(i), 1, want, stdin);
            if (got == 0 && i == 0) return 0;
            if (got != want) return 3;
        }
        FN(_invoke)();
        for (int o = 0; o < FN(_outputs)(); ++o) {
            size_t n = (size_t)FN(_output_bytes)(o);
            if (fwrite(FN(_output)(o), 1, n, stdout) != n) return 4;
        }
    }
}
