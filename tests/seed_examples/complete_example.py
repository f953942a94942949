from pathlib import Path
from typing import Dict, List, Optional, Tuple
import numpy as np
from flwr.server import ServerApp, ServerConfig, ClientManager
from flwr.server.strategy import FedAvg
from flwr.server.client_proxy import ClientProxy
from flwr.common import (
    Context,
    Parameters,
    FitRes,
    EvaluateRes,
    Scalar,
    parameters_to_ndarrays,
    ndarrays_to_parameters
)
from flwr.app import RecordDict
from syft_flwr.fl_orchestrator import syftbox_flwr_server
class DiabetesFedAvg(FedAvg):
    """Custom FedAvg with metrics aggregation for diabetes prediction."""
    def aggregate_fit(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, FitRes]],
        failures: List[BaseException]
    ) -> Tuple[Optional[Parameters], Dict[str, Scalar]]:
        """Aggregate model updates and log statistics."""
        # Call parent aggregation
        parameters_aggregated, metrics_aggregated = super().aggregate_fit(
            server_round, results, failures
        )
        # Log round statistics
        if results:
            total_examples = sum([r.num_examples for _, r in results])
            print(f"\n=== Round {server_round} ===")
            print(f"Clients participated: {len(results)}")
            print(f"Total training examples: {total_examples}")
            print(f"Failures: {len(failures)}")
            metrics_aggregated["num_clients"] = len(results)
            metrics_aggregated["total_examples"] = total_examples
        return parameters_aggregated, metrics_aggregated
    def aggregate_evaluate(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, EvaluateRes]],
        failures: List[BaseException]
    ) -> Tuple[Optional[float], Dict[str, Scalar]]:
        """Aggregate evaluation results."""
        if not results:
            return None, {}
        # Weighted average of losses
        total_examples = sum([r.num_examples for _, r in results])
        weighted_losses = [
            r.loss * r.num_examples for _, r in results
        ]
        avg_loss = sum(weighted_losses) / total_examples
        # Aggregate accuracy metrics
        accuracies = [
            r.metrics.get("accuracy", 0.0) * r.num_examples
            for _, r in results
        ]
        avg_accuracy = sum(accuracies) / total_examples
        print(f"\n=== Evaluation Round {server_round} ===")
        print(f"Average loss: {avg_loss:.4f}")
        print(f"Average accuracy: {avg_accuracy:.4f}")
        metrics = {
            "accuracy": avg_accuracy,
            "num_clients_evaluated": len(results)
        }
        return avg_loss, metrics
# Configuration
datasites = [
    "alice@hospital-a.org",
    "bob@hospital-b.org",
    "carol@hospital-c.org",
]
strategy = DiabetesFedAvg(
    fraction_fit=1.0,
    fraction_evaluate=1.0,
    min_fit_clients=3,
    min_evaluate_clients=3,
    min_available_clients=3
)
config = ServerConfig(num_rounds=10)
def server_fn(context: Context):
    return strategy, config
app = ServerApp(server_fn=server_fn)
if __name__ == "__main__":
    print("Starting Diabetes Prediction FL Server")
    print(f"Datasites: {datasites}")
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    final_context = syftbox_flwr_server(
        server_app=app,
        context=context,
        datasites=datasites,
        app_name="diabetes_prediction",
        project_dir=Path(__file__).parent / "project",
    )
    print("\n=== Training Complete ===")
    print(f"Final context state: {final_context.state}")
