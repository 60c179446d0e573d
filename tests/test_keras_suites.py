"""Keras's own LSTM, GRU and Bidirectional test modules (shipped in the keras wheel),
run with `kgates.LSTM` and `kgates.GRU` in place of Keras's layers: the drop-in
claim, checked by Keras's tests rather than ours."""

import unittest.mock

import keras.src.layers
from keras.src.layers.rnn import bidirectional_test, gru_test, lstm_test

import kgates


class _WithKgatesLayers:
    """Each test sees `kgates.LSTM`/`GRU` where Keras's module reads `layers.LSTM`/`GRU`."""

    def setUp(self):
        super().setUp()
        patch = unittest.mock.patch.multiple(keras.src.layers, LSTM=kgates.LSTM, GRU=kgates.GRU)
        patch.start()
        self.addCleanup(patch.stop)


class TestKerasLSTMTests(_WithKgatesLayers, lstm_test.LSTMTest):
    pass


class TestKerasGRUTests(_WithKgatesLayers, gru_test.GRUTest):
    pass


class TestKerasBidirectionalTests(_WithKgatesLayers, bidirectional_test.SimpleRNNTest):
    pass


def test_the_layers_keras_tests_build_are_kgates_layers():
    """The substitution reaches Keras's modules (else the tests above test Keras)."""
    test = TestKerasLSTMTests("test_basics")
    test.setUp()
    try:
        assert lstm_test.layers.LSTM is kgates.LSTM and gru_test.layers.GRU is kgates.GRU
        assert bidirectional_test.layers.LSTM is kgates.LSTM
    finally:
        test.doCleanups()
    assert lstm_test.layers.LSTM is not kgates.LSTM
