"""quickstart-numpy: the ClientApp, training and evaluating on this node's partition."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from quickstart_numpy.task import evaluate, load_data, train

app = ClientApp()


def _partition(context: Context) -> tuple:
    return load_data(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def train_model(msg: Message, context: Context) -> Message:
    """Train the received model on the local partition and send it back with its loss."""
    x_train, y_train, _, _ = _partition(context)
    config = msg.content["config"]
    weights, loss = train(
        msg.content["arrays"].to_numpy_ndarrays(),
        x_train,
        y_train,
        epochs=int(config["local-epochs"]),
        learning_rate=float(config["lr"]),
    )
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(y_train)})
    content = RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_model(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local test split."""
    _, _, x_test, y_test = _partition(context)
    loss, accuracy = evaluate(msg.content["arrays"].to_numpy_ndarrays(), x_test, y_test)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(y_test)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
