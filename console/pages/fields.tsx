/** Form fields more than one page uses. */

export const STRATEGIES = ['column-lww', 'row-lww', 'server-wins', 'client-wins'] as const;

/** A labelled select of `options`; with `any`, an empty first choice of that name. */
export function Choice({ label, value, options, onChange, any }: { label: string; value: string; options: readonly string[]; onChange: (value: string) => void; any?: string }) {
  return (
    <label>
      {label}
      <select name={label.toLowerCase()} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {any !== undefined && <option value="">{any}</option>}
        {options.map((option) => (
          <option key={option} value={option}>
            {option}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The merge strategy. */
export function StrategySelect({ value, onChange }: { value: string; onChange: (strategy: string) => void }) {
  return <Choice label="Strategy" value={value} options={STRATEGIES} onChange={onChange} />;
}
