/** Form fields more than one page uses. */

export const STRATEGIES = ['column-lww', 'row-lww', 'server-wins', 'client-wins'] as const;

/** The merge strategy, as a labelled select. */
export function StrategySelect({ value, onChange }: { value: string; onChange: (strategy: string) => void }) {
  return (
    <label>
      Strategy
      <select name="strategy" value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {STRATEGIES.map((s) => (
          <option key={s} value={s}>
            {s}
          </option>
        ))}
      </select>
    </label>
  );
}
