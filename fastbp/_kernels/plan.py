"""Column layout of the plan: the integer and float arrays that describe a network to the kernels.

One row per Dense layer (with the activation and dropout that follow it). Workspace offsets are in
"row units": a region of width n starts at capacity * unit_offset in the flat workspace and holds up to
`capacity` rows of n values, so the same plan serves a workspace sized for any batch.
"""

# Integer columns (int64 array, shape (n_layers, N_INT)).
N_IN = 0
N_OUT = 1
ACT = 2
W_OFF = 3  # offset of W (n_in, n_out) in params/grads
B_OFF = 4  # offset of b (n_out,)
Z_UNIT = 5  # pre-activation; equals A_UNIT when the activation runs in place
A_UNIT = 6  # activation output
MASK_UNIT = 7  # dropout mask (0 or 1/(1-p)); -1 without dropout
OUT_UNIT = 8  # what the next layer reads: the dropped-out copy, or A itself
FORWARD_FN = 9  # address of the activation's forward entry for the network's dtype (indirect.py)
BACKWARD_FN = 10  # address of its backward entry
GEMM_NN_FN = 11  # addresses of the layer's product entries for its shape and dtype (blas.layer_addresses)
GEMM_TN_FN = 12
GEMM_NT_FN = 13
DROPOUT_FN = 14  # address of the dropout entry for the dtype (steps.dropout_address); 0 without dropout
N_INT = 15

# Float columns (float64 array, shape (n_layers, N_FLOAT)).
ACT_PARAM = 0
DROP_P = 1
N_FLOAT = 2

# Global units (int64 array of length N_GLOBAL).
IN_UNIT = 0  # gathered input batch
Y_UNIT = 1  # gathered targets
DELTA0_UNIT = 2  # two ping-pong delta buffers of the widest layer
DELTA1_UNIT = 3
TOTAL_UNITS = 4
SW_UNIT = 5  # gathered per-row sample weights (one column)
N_GLOBAL = 6
