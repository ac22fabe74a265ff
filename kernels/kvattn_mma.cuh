/* kvattn_mma.cuh — (stub) tensor-core split kernel of kvattn.cu. */
static bool kva_mma_supported(int D, int k_bits, int v_bits) {
    (void)D, (void)k_bits, (void)v_bits;
    return false;
}
static cudaError_t kva_mma_launch(const KvaParams &P, int blocks, cudaStream_t stream) {
    (void)P, (void)blocks, (void)stream;
    return cudaErrorInvalidValue;
}
