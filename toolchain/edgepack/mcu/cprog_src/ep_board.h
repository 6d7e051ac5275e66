/* edgepack C program on a bare Cortex-M board: what ep_startup.c gives the harness. */
#ifndef EP_BOARD_H
#define EP_BOARD_H

#include <stdint.h>

int ep_semihost(int op, void *arg);
void ep_write(const char *text);
void ep_exit(int code);
void ep_ticks_start(void);
uint64_t ep_ticks(void);
void ep_calibration_loop(uint32_t n);

#endif
