"""Tiled shared-memory GEMM over flat buffers, with an optional bias + activation + dropout epilogue.

C (M, N) = op(A) (M, K) @ op(B) (K, N), every matrix row-major inside a flat 1-D array at an offset:
op(A) is A itself (M, K) or, with ta, the transpose of a stored (K, M) matrix; op(B) is B (K, N) or,
with tb, the transpose of a stored (N, K). The three GEMMs of backprop are then one routine:
forward Z = A_prev @ W, dW = A_prev.T @ D (ta), dA = D @ W.T (tb); the CPU gets the same transposes
from BLAS flags.

Each block computes TILE x TILE outputs at a time, one per thread, staging TILE-wide panels of op(A)
and op(B) in shared memory; tiles are spread over the grid (grid-stride), so any grid size works.
Out-of-range panel entries load as zero, so partial tiles need no special case.
"""

from numba import cuda

from fastbp._kernels.cuda.activations import activation_forward
from fastbp._kernels.cuda.dropout import dropout_uniform
from fastbp._kernels.cuda.jit import BLOCK, TILE, device, kernel, like


@device
def tile_product(A, a_off, ta, B, b_off, tb, M, N, K, row0, col0, sh):
    """This thread's entry (row0 + threadIdx.y, col0 + threadIdx.x) of op(A) @ op(B) (zero-padded
    outside M x N), the panels staged in sh[0] and sh[1]. Every thread of the block must call it: it
    synchronizes the block."""
    sa, sb = sh[0], sh[1]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    zero = like(A[a_off], 0.0)
    acc = zero
    i = row0 + ty
    j = col0 + tx
    for k0 in range(0, K, TILE):
        k = k0 + tx
        if i < M and k < K:
            sa[ty, tx] = A[a_off + k * M + i] if ta else A[a_off + i * K + k]
        else:
            sa[ty, tx] = zero
        k = k0 + ty
        if k < K and j < N:
            sb[ty, tx] = B[b_off + j * K + k] if tb else B[b_off + k * N + j]
        else:
            sb[ty, tx] = zero
        cuda.syncthreads()
        for kk in range(TILE):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    return acc


@device
def tile_count(M, N):
    return ((M + TILE - 1) // TILE) * ((N + TILE - 1) // TILE)


@device
def gemm_tile(A, a_off, ta, B, b_off, tb, C, c_off, M, N, K, tile, sh):
    """Tile number `tile` (row-major over the tile grid) of C = op(A) @ op(B)."""
    tiles_n = (N + TILE - 1) // TILE
    row0 = (tile // tiles_n) * TILE
    col0 = (tile % tiles_n) * TILE
    acc = tile_product(A, a_off, ta, B, b_off, tb, M, N, K, row0, col0, sh)
    i = row0 + cuda.threadIdx.y
    j = col0 + cuda.threadIdx.x
    if i < M and j < N:
        C[c_off + i * N + j] = acc


@device
def gemm(A, a_off, ta, B, b_off, tb, C, c_off, M, N, K, sh):
    """C = op(A) @ op(B), all of it, over whatever grid runs this."""
    for tile in range(cuda.blockIdx.x, tile_count(M, N), cuda.gridDim.x):
        gemm_tile(A, a_off, ta, B, b_off, tb, C, c_off, M, N, K, tile, sh)


@device
def gemm_bias_activation(
    A,
    a_off,
    params,
    w_off,
    b_off,
    ws,
    z_off,
    out_a_off,
    code,
    param,
    M,
    N,
    K,
    dropout,
    mask_off,
    drop_off,
    drop_p,
    seed,
    step,
    layer,
    sh,
):
    """The fused forward of one layer: Z = A_in @ W + b and A = f(Z) in the GEMM's epilogue (Z is
    written only where it is kept apart from A); with `dropout`, also the mask (0 or 1/(1-p), drawn
    by dropout_uniform exactly as the CPU's fill_dropout_mask) and the dropped-out copy A * mask."""
    keep = like(params[0], 1.0 / (1.0 - drop_p)) if dropout else like(params[0], 1.0)
    zero = like(params[0], 0.0)
    tiles_n = (N + TILE - 1) // TILE
    for tile in range(cuda.blockIdx.x, tile_count(M, N), cuda.gridDim.x):
        row0 = (tile // tiles_n) * TILE
        col0 = (tile % tiles_n) * TILE
        acc = tile_product(A, a_off, False, params, w_off, False, M, N, K, row0, col0, sh)
        i = row0 + cuda.threadIdx.y
        j = col0 + cuda.threadIdx.x
        if i < M and j < N:
            e = i * N + j
            z = acc + params[b_off + j]
            if out_a_off != z_off:
                ws[z_off + e] = z
            a = activation_forward(code, param, z)
            ws[out_a_off + e] = a
            if dropout:
                m = zero if dropout_uniform(seed, step, layer, e) < drop_p else keep
                ws[mask_off + e] = m
                ws[drop_off + e] = a * m


@kernel
def gemm_kernel(A, a_off, ta, B, b_off, tb, C, c_off, M, N, K):
    tile_a = cuda.shared.array(BLOCK, dtype=C.dtype)
    tile_b = cuda.shared.array(BLOCK, dtype=C.dtype)
    gemm(A, a_off, ta, B, b_off, tb, C, c_off, M, N, K, (tile_a, tile_b, tile_a))
