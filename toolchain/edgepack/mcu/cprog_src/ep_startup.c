/* edgepack C program on a bare Cortex-M board (QEMU's mps2-an386, mps2-an500, mps3-an547): the
 * vector table, the reset handler (FPU on, .data copied, .bss zeroed), Arm semihosting calls
 * (text out, exit code back to the host) and a tick counter on SysTick, which under QEMU's -icount
 * advances with executed instructions. No C library start-up, no heap. */
#include <stdint.h>

#include "ep_board.h"

extern int main(void);
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

int ep_semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void ep_write(const char *text) { ep_semihost(0x04, (void *)text); }

void ep_exit(int code) {
    uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit */
    ep_semihost(0x20, block);
    for (;;) {
    }
}

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static volatile uint32_t wraps;

void SysTick_Handler(void) { ++wraps; }

void ep_ticks_start(void) {
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0) {
    } /* the first reload: from here the count only goes down, and wraps are counted */
}

uint64_t ep_ticks(void) {
    uint32_t w, v;
    do {
        w = wraps;
        v = SYST_CVR;
    } while (w != wraps);
    return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

/* a loop of exactly 2 x n instructions: the host turns ticks into instructions with it */
void ep_calibration_loop(uint32_t n) { __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc"); }

void Reset_Handler(void) {
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10 and CP11 full access */
    __asm__ volatile("dsb\n isb");
#endif
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    ep_exit(main());
}

void Fault_Handler(void) {
    ep_write("E fault\n");
    ep_exit(99);
}

__attribute__((section(".vectors"), used)) const void *const ep_vectors[16] = {
    &_estack, (void *)Reset_Handler, (void *)Fault_Handler, (void *)Fault_Handler, (void *)Fault_Handler,
    (void *)Fault_Handler, (void *)Fault_Handler, 0, 0, 0, 0, (void *)Fault_Handler, (void *)Fault_Handler, 0,
    (void *)Fault_Handler, (void *)SysTick_Handler};
