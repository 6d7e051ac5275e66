/* edgepack C program, serial firmware: the board side of edgepack's serial protocol
 * (docs/serial-protocol.md, framing in edgepack_wire.c) over an Arm CMSDK APB UART, the UART of
 * the MPS2/MPS3 boards (and of QEMU's mps2-an386, mps2-an500 and mps3-an547), serving the
 * generated program: HELLO, INFER, LOOP. `edgepack bench --device serial:PORT` drives it.
 *
 * Built by edgepack with these defines: EP_MODEL_HEADER, EP_PREFIX (the program), EP_UART_BASE,
 * EP_IN_BYTES (all inputs, in order), EP_OUT_BYTES (output 0), EP_ARENA_BYTES, EP_MODEL_BYTES and
 * EP_MODEL_SHA256 (the .tflite the program was generated from, as `{0x.., ...}`), EP_FIRMWARE
 * (its name) and EP_CLOCK_HZ. Under emulation (EP_EMULATED) the counts it reports are instructions
 * executed (SysTick ticks under QEMU's -icount, converted with a loop of known length at start-up),
 * and the firmware's name says so; on silicon they would be SysTick cycles. */
#include <stdint.h>
#include <string.h>

#include EP_MODEL_HEADER
#include "edgepack_wire.h"
#include "ep_board.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(EP_PREFIX, name)
#define EP_CALIBRATION 1000000u /* iterations of a 2-instruction loop */

#define UART_REG(offset) (*(volatile uint32_t *)(EP_UART_BASE + (offset)))
#define UART_DATA UART_REG(0x00)
#define UART_STATE UART_REG(0x04) /* bit 0: TX buffer full, bit 1: RX buffer full */
#define UART_CTRL UART_REG(0x08)  /* bit 0: TX enable, bit 1: RX enable, bit 3: RX interrupt enable */
#define UART_INTCLEAR UART_REG(0x0C)
#define UART_BAUDDIV UART_REG(0x10)
#define NVIC_ISER(k) (*(volatile uint32_t *)(0xE000E100u + 4u * (k)))
#define EP_IRQS 128 /* device interrupts in the vector table: more than these boards have */

#define IO_BYTES (EP_IN_BYTES > EP_OUT_BYTES + 8 ? EP_IN_BYTES : EP_OUT_BYTES + 8)
#define MAX_FRAME (EP_HEADER_BYTES + IO_BYTES + 64 + sizeof(firmware) + EP_CRC_BYTES)

static const char firmware[] = EP_FIRMWARE;
static const uint8_t model_sha256[32] = EP_MODEL_SHA256;
static uint8_t rx[MAX_FRAME] __attribute__((aligned(4)));
static uint8_t tx[MAX_FRAME] __attribute__((aligned(4)));
static uint8_t *const payload = tx + EP_HEADER_BYTES; /* replies are written in place */
static uint64_t calibration_ticks;

/* Waiting for the host, the core sleeps (WFI) until the UART's receive interrupt, instead of
 * spinning: an emulated board left running idles. Every device interrupt lands here; only the
 * UART's is enabled at its source, and it is cleared there. */
void Irq_Handler(void) { UART_INTCLEAR = 0xFu; }

__attribute__((section(".vectors_irq"), used)) const void *const ep_irq_vectors[EP_IRQS] = {
    [0 ... EP_IRQS - 1] = (void *)Irq_Handler};

static void uart_init(void) {
    UART_BAUDDIV = 16u; /* the smallest divider the UART takes; the board's clock sets the rate */
    UART_CTRL = 3u | 8u;
    for (int k = 0; k < EP_IRQS / 32; ++k) NVIC_ISER(k) = 0xFFFFFFFFu;
}

static int uart_getc(void) { return (UART_STATE & 2u) ? (int)(UART_DATA & 0xFFu) : -1; }

/* the next received byte, sleeping until one comes (interrupts masked around the check, so a byte
 * that arrives between the check and WFI still wakes it) */
static uint8_t uart_wait_getc(void) {
    for (;;) {
        __asm__ volatile("cpsid i" ::: "memory");
        int c = uart_getc();
        if (c < 0) __asm__ volatile("wfi");
        __asm__ volatile("cpsie i" ::: "memory");
        if (c >= 0) return (uint8_t)c;
    }
}

static void uart_write(const uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART_STATE & 1u) {
        }
        UART_DATA = data[i];
    }
}

static void send(uint8_t type, uint8_t seq, uint32_t n) {
    size_t len = ep_encode(tx, sizeof tx, type, seq, payload, n); /* payload is tx's own: copied onto itself */
    if (len) uart_write(tx, len);
}

static void send_error(uint8_t seq, uint16_t code, const char *message) {
    uint32_t n = 2;
    ep_put_u16(payload, code);
    while (*message && n < 200) payload[n++] = (uint8_t)*message++;
    send(EP_ERROR, seq, n);
}

static uint32_t put_name(uint8_t *out) {
    uint32_t n = 0;
    while (firmware[n]) {
        out[n] = (uint8_t)firmware[n];
        ++n;
    }
    return n;
}

/* the count reported for a span of ticks: instructions under emulation, else the ticks */
static uint64_t count(uint64_t ticks) {
#ifdef EP_EMULATED
    return calibration_ticks ? ticks * (2ull * EP_CALIBRATION) / calibration_ticks : 0;
#else
    return ticks;
#endif
}

static uint64_t invoke_counted(void) {
    uint64_t a = ep_ticks();
    FN(_invoke)();
    return count(ep_ticks() - a);
}

static void load_inputs(const uint8_t *src) {
    for (int i = 0; i < FN(_inputs)(); ++i) {
        memcpy(FN(_input)(i), src, (size_t)FN(_input_bytes)(i));
        src += FN(_input_bytes)(i);
    }
}

static void serve(const ep_decoder *d) {
    uint8_t type = ep_frame_type(d), seq = ep_frame_seq(d);
    const uint8_t *in = ep_frame_payload(d);
    uint32_t n = ep_frame_length(d);
    if (type == EP_HELLO) {
        ep_put_u16(payload, EP_PROTOCOL_VERSION);
        ep_put_u32(payload + 2, EP_CLOCK_HZ);
        ep_put_u32(payload + 6, EP_ARENA_BYTES);
        ep_put_u32(payload + 10, EP_MODEL_BYTES);
        ep_put_u32(payload + 14, EP_IN_BYTES);
        ep_put_u32(payload + 18, EP_OUT_BYTES);
        memcpy(payload + 22, model_sha256, 32);
        send(EP_HELLO_OK, seq, 54 + put_name(payload + 54));
    } else if (type == EP_INFER) {
        if (n != EP_IN_BYTES) {
            send_error(seq, EP_ERR_INPUT_SIZE, "INFER's payload is not the model's input size");
            return;
        }
        load_inputs(in);
        ep_put_u64(payload, invoke_counted());
        memcpy(payload + 8, FN(_output)(0), EP_OUT_BYTES);
        send(EP_OUTPUT, seq, 8 + EP_OUT_BYTES);
    } else if (type == EP_LOOP && n == 4) {
        uint32_t runs = ep_get_u32(in);
        uint64_t a = ep_ticks();
        for (uint32_t k = 0; k < runs; ++k) FN(_invoke)(); /* on the last input: its arena bytes stay */
        ep_put_u32(payload, runs);
        ep_put_u64(payload + 4, count(ep_ticks() - a));
        send(EP_LOOP_DONE, seq, 12);
    } else {
        send_error(seq, EP_ERR_TYPE, "unknown request");
    }
}

int main(void) {
    static ep_decoder d;
    uart_init();
    ep_ticks_start();
    uint64_t t0 = ep_ticks();
    ep_calibration_loop(EP_CALIBRATION);
    calibration_ticks = ep_ticks() - t0;
    ep_put_u16(payload, EP_PROTOCOL_VERSION);
    send(EP_BOOT, 0, 2 + put_name(payload + 2));
    ep_decoder_init(&d, rx, sizeof rx);
    for (;;) {
        int got = ep_decode_byte(&d, uart_wait_getc());
        if (got > 0) serve(&d);
        else if (got < 0) send_error(0, EP_ERR_FRAME, "bad frame (length or CRC)");
    }
}
