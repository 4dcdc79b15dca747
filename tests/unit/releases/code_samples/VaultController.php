<?php

declare(strict_types=1);

namespace App\Http\Controllers;

use OpenTelemetry\API\Globals;
use OpenTelemetry\API\Instrumentation\WithSpan;

class VaultController extends Controller
{
    public function __construct(private Repository $repository)
    {
    }

    public function deposit(Request $request): JsonResponse
    {
        $span = Globals::tracerProvider()->getTracer('vault')->spanBuilder('deposit')->startSpan();
        try {
            $cents = (int) $request->input('cents');
            return response()->json(['balance' => $this->repository->add($cents)]);
        } finally {
            $span->end();
        }
    }

    #[WithSpan]
    public function refund(Request $request): JsonResponse
    {
        return response()->json(['balance' => $this->repository->add(-1)]);
    }

    public function balances(array $accounts): array
    {
        return array_map(fn ($a) => $this->repository->balance($a), $accounts);
    }
}

function format_cents(int $cents): string
{
    return sprintf('%.2f EUR', $cents / 100);
}
