"""kgates: recurrent cells for Keras 3 that show their gates."""

from kgates.gates import split_gates as split_gates
from kgates.gru import GRUCell as GRUCell
from kgates.lstm import VARIANTS as VARIANTS
from kgates.lstm import LSTMCell as LSTMCell
from kgates.rnn import GatedRNN as GatedRNN

__version__ = "0.1.0"
from kgates.fused import GRU as GRU
from kgates.fused import LSTM as LSTM
from kgates.gradflow import gradient_flow as gradient_flow
from kgates.report import write_report as write_report
from kgates.tasks import make_task as make_task
from kgates.tensorboard import TensorBoard as TensorBoard
from kgates.tracing import trace as trace
from kgates.tuning import GateHyperModel as GateHyperModel
from kgates.tuning import tune as tune
